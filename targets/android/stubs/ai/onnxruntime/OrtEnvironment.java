package ai.onnxruntime;

// Stub of the API the generated code uses. Source: https://github.com/microsoft/onnxruntime/blob/v1.23.2/java/src/main/java/ai/onnxruntime/OrtEnvironment.java
public final class OrtEnvironment {
  private OrtEnvironment() {}

  public static OrtEnvironment getEnvironment() {
    throw new UnsupportedOperationException("stub");
  }

  public OrtSession createSession(byte[] modelArray, OrtSession.SessionOptions options)
      throws OrtException {
    throw new UnsupportedOperationException("stub");
  }
}
