"""packager: ONNX model -> validated, release-ready mobile bundles."""

__version__ = "0.1.0"
