package org.tensorflow.lite.gpu;

// Stub of the API the generated code uses (the class also implements DelegateFactory). Source:
// https://github.com/google-ai-edge/LiteRT/blob/v1.4.1/tflite/delegates/gpu/java/src/main/java/org/tensorflow/lite/gpu/GpuDelegateFactory.java
public class GpuDelegateFactory {
  public static class Options {
    public Options() {}

    public Options setPrecisionLossAllowed(boolean precisionLossAllowed) {
      return this;
    }

    public Options setQuantizedModelsAllowed(boolean quantizedModelsAllowed) {
      return this;
    }
  }
}
