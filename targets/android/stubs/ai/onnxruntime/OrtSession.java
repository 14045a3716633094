package ai.onnxruntime;

import ai.onnxruntime.providers.NNAPIFlags;
import java.util.EnumSet;
import java.util.Map;
import java.util.Optional;

// Stub of the API the generated code uses. Source: https://github.com/microsoft/onnxruntime/blob/v1.23.2/java/src/main/java/ai/onnxruntime/OrtSession.java
public class OrtSession implements AutoCloseable {
  private OrtSession() {}

  public Result run(Map<String, ? extends OnnxTensorLike> inputs) throws OrtException {
    throw new UnsupportedOperationException("stub");
  }

  @Override
  public void close() throws OrtException {}

  public static class SessionOptions implements AutoCloseable {
    public enum OptLevel {
      NO_OPT,
      BASIC_OPT,
      EXTENDED_OPT,
      ALL_OPT;
    }

    public SessionOptions() {}

    public void setOptimizationLevel(OptLevel level) throws OrtException {}

    public void setInterOpNumThreads(int numThreads) throws OrtException {}

    public void setIntraOpNumThreads(int numThreads) throws OrtException {}

    public void addConfigEntry(String configKey, String configValue) throws OrtException {}

    public void addNnapi(EnumSet<NNAPIFlags> flags) throws OrtException {}

    public void addXnnpack(Map<String, String> providerOptions) throws OrtException {}

    @Override
    public void close() {}
  }

  public static class Result implements AutoCloseable {
    private Result() {}

    public Optional<OnnxValue> get(String key) {
      throw new UnsupportedOperationException("stub");
    }

    @Override
    public void close() {}
  }
}
