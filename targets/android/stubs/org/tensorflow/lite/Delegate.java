package org.tensorflow.lite;

import java.io.Closeable;

// Stub of the API the generated code uses. Source: https://github.com/google-ai-edge/LiteRT/blob/v1.4.1/tflite/java/src/main/java/org/tensorflow/lite/Delegate.java
public interface Delegate extends Closeable {
  long getNativeHandle();

  @Override
  default void close() {}
}
