package android.content.res;

import java.io.Closeable;
import java.io.FileDescriptor;
import java.io.IOException;

// Stub of the API the generated code uses (the real class also implements Parcelable).
// Source: https://developer.android.com/reference/android/content/res/AssetFileDescriptor
public class AssetFileDescriptor implements Closeable {
  private AssetFileDescriptor() {}

  public FileDescriptor getFileDescriptor() {
    throw new UnsupportedOperationException("stub");
  }

  public long getStartOffset() {
    throw new UnsupportedOperationException("stub");
  }

  public long getDeclaredLength() {
    throw new UnsupportedOperationException("stub");
  }

  @Override
  public void close() throws IOException {}
}
