package org.tensorflow.lite;

// Stub of the API the generated code uses. Source: https://github.com/google-ai-edge/LiteRT/blob/v1.4.1/tflite/java/src/main/java/org/tensorflow/lite/Tensor.java
public interface Tensor {
  class QuantizationParams {
    public QuantizationParams(final float scale, final int zeroPoint) {}

    public float getScale() {
      throw new UnsupportedOperationException("stub");
    }

    public int getZeroPoint() {
      throw new UnsupportedOperationException("stub");
    }
  }

  DataType dataType();

  int[] shape();

  QuantizationParams quantizationParams();
}
