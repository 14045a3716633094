package org.tensorflow.lite.gpu;

import org.tensorflow.lite.Delegate;

// Stub of the API the generated code uses. Source:
// https://github.com/google-ai-edge/LiteRT/blob/v1.4.1/tflite/delegates/gpu/java/src/main/java/org/tensorflow/lite/gpu/GpuDelegate.java
// (its own GpuDelegate.Options is @Deprecated in favour of GpuDelegateFactory.Options)
public class GpuDelegate implements Delegate {
  public GpuDelegate(GpuDelegateFactory.Options options) {}

  @Override
  public long getNativeHandle() {
    throw new UnsupportedOperationException("stub");
  }

  @Override
  public void close() {}
}
