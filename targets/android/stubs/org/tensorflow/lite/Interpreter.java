package org.tensorflow.lite;

import java.nio.ByteBuffer;
import java.util.Map;

// Stub of the API the generated code uses. Sources: https://github.com/google-ai-edge/LiteRT/blob/v1.4.1/tflite/java/src/main/java/org/tensorflow/lite/Interpreter.java
// and InterpreterApi.java beside it (Interpreter implements InterpreterApi, which extends AutoCloseable).
public final class Interpreter implements AutoCloseable {
  public static class Options {
    public Options() {}

    public Options setUseXNNPACK(boolean useXNNPACK) {
      return this;
    }

    public Options setNumThreads(int numThreads) {
      return this;
    }

    public Options addDelegate(Delegate delegate) {
      return this;
    }
  }

  public Interpreter(ByteBuffer byteBuffer, Options options) {
    throw new UnsupportedOperationException("stub");
  }

  public void runSignature(
      Map<String, Object> inputs, Map<String, Object> outputs, String signatureKey) {}

  public Tensor getInputTensorFromSignature(String inputName, String signatureKey) {
    throw new UnsupportedOperationException("stub");
  }

  public Tensor getOutputTensorFromSignature(String outputName, String signatureKey) {
    throw new UnsupportedOperationException("stub");
  }

  @Override
  public void close() {}
}
