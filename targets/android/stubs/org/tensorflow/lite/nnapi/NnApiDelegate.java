package org.tensorflow.lite.nnapi;

import org.tensorflow.lite.Delegate;

// Stub of the API the generated code uses. Source:
// https://github.com/google-ai-edge/LiteRT/blob/v1.4.1/tflite/delegates/nnapi/java/src/main/java/org/tensorflow/lite/nnapi/NnApiDelegate.java
public class NnApiDelegate implements Delegate, AutoCloseable {
  public static final class Options {
    public Options() {}

    public Options setAllowFp16(boolean enable) {
      return this;
    }
  }

  public NnApiDelegate(Options options) {}

  @Override
  public long getNativeHandle() {
    throw new UnsupportedOperationException("stub");
  }

  @Override
  public void close() {}
}
