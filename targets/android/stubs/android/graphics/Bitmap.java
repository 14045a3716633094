package android.graphics;

// Stub of the API the generated code uses (the real class also implements Parcelable).
// Source: https://developer.android.com/reference/android/graphics/Bitmap
// (getWidth(), getHeight(), getPixels(int[], int, int, int, int, int, int))
public final class Bitmap {
  private Bitmap() {}

  public final int getWidth() {
    throw new UnsupportedOperationException("stub");
  }

  public final int getHeight() {
    throw new UnsupportedOperationException("stub");
  }

  public void getPixels(int[] pixels, int offset, int stride, int x, int y, int width, int height) {}
}
