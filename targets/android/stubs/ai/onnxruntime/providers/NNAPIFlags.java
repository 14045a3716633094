package ai.onnxruntime.providers;

// Stub of the API the generated code uses. Source: https://github.com/microsoft/onnxruntime/blob/v1.23.2/java/src/main/java/ai/onnxruntime/providers/NNAPIFlags.java
public enum NNAPIFlags {
  USE_FP16,
  USE_NCHW,
  CPU_DISABLED,
  CPU_ONLY,
  CPU_DISABLED_SOFT;
}
