package ai.onnxruntime;

// Stub of the API the generated code uses. Source: https://github.com/microsoft/onnxruntime/blob/v1.23.2/java/src/main/java/ai/onnxruntime/OnnxTensorLike.java
public abstract class OnnxTensorLike implements OnnxValue {}
