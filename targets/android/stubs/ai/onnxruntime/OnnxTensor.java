package ai.onnxruntime;

import java.nio.FloatBuffer;

// Stub of the API the generated code uses. Source: https://github.com/microsoft/onnxruntime/blob/v1.23.2/java/src/main/java/ai/onnxruntime/OnnxTensor.java
public class OnnxTensor extends OnnxTensorLike {
  private OnnxTensor() {}

  public static OnnxTensor createTensor(OrtEnvironment env, FloatBuffer data, long[] shape)
      throws OrtException {
    throw new UnsupportedOperationException("stub");
  }

  public FloatBuffer getFloatBuffer() {
    throw new UnsupportedOperationException("stub");
  }

  @Override
  public void close() {}
}
