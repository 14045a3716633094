"""The Android platform target: ORT-format and TFLite artifacts, Kotlin loaders, one Gradle module."""
