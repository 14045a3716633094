package android.content.res;

import java.io.IOException;
import java.io.InputStream;

// Stub of the API the generated code uses.
// Source: https://developer.android.com/reference/android/content/res/AssetManager
// (open(String), openFd(String))
public final class AssetManager {
  private AssetManager() {}

  public final InputStream open(String fileName) throws IOException {
    throw new UnsupportedOperationException("stub");
  }

  public final AssetFileDescriptor openFd(String fileName) throws IOException {
    throw new UnsupportedOperationException("stub");
  }
}
