package android.content;

import android.content.res.AssetManager;

// Stub of the API the generated code uses.
// Source: https://developer.android.com/reference/android/content/Context#getAssets()
public abstract class Context {
  public abstract AssetManager getAssets();
}
