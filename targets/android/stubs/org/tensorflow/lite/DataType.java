package org.tensorflow.lite;

// Stub of the API the generated code uses. Source: https://github.com/google-ai-edge/LiteRT/blob/v1.4.1/tflite/java/src/main/java/org/tensorflow/lite/DataType.java
public enum DataType {
  FLOAT32,
  INT32,
  UINT8,
  INT64,
  STRING,
  BOOL,
  INT16,
  INT8;
}
