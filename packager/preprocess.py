"""Image -> tensor exactly as the app must do it.

This is the single definition of the model's preprocessing: host validation uses it, and the
generated app code is checked against it. pixels 0..255 -> channel order -> (x - mean) / std -> layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from packager.config import InputSpec
from packager.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


def read_image(path: Path) -> np.ndarray:
    """BGR uint8 HxWx3; OpenCV returns None rather than raising, so turn that into a named error."""
    import cv2  # ~0.2 s to import: only steps that read pixels pay it, not planning a build

    if not path.is_file():
        raise DataError(path, "image not found", "check the path (paths are relative to the list/pairs file)")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(path, "OpenCV cannot decode this image", "replace or remove the file")
    return image


def _resize(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    import cv2

    h, w = spec.height, spec.width
    if spec.resize == "center-crop":
        scale = max(h / image.shape[0], w / image.shape[1])
        scaled = cv2.resize(
            image,
            (max(w, round(image.shape[1] * scale)), max(h, round(image.shape[0] * scale))),
            interpolation=cv2.INTER_LINEAR,
        )
        top = (scaled.shape[0] - h) // 2
        left = (scaled.shape[1] - w) // 2
        return scaled[top : top + h, left : left + w]
    if image.shape[:2] == (h, w):
        return image
    if spec.resize == "letterbox":
        return _letterbox(image, h, w)
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


LETTERBOX_FILL = 0
"""Pixel value (every channel, 0..255) around a letterboxed image: black, as detectors are trained."""
LETTERBOX_FACTS = {"letterbox_fill": LETTERBOX_FILL, "letterbox_align": "center"}


def _letterbox(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """Scale to fit inside h x w keeping the aspect ratio, centred on a LETTERBOX_FILL canvas.

    Detectors (YuNet, CenterFace) must not see a 16:9 frame stretched to a square: faces would be
    distorted. The scaled size rounds half away from zero and the offsets floor, both in pixels.
    """
    import cv2

    scale = min(h / image.shape[0], w / image.shape[1])
    nw = max(1, min(w, round(image.shape[1] * scale)))
    nh = max(1, min(h, round(image.shape[0] * scale)))
    canvas = np.full((h, w, *image.shape[2:]), LETTERBOX_FILL, dtype=image.dtype)
    top, left = (h - nh) // 2, (w - nw) // 2
    canvas[top : top + nh, left : left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas


def to_tensor(bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One image (BGR uint8, as OpenCV reads it) -> one float32 tensor without the batch dim."""
    import cv2

    image = _resize(bgr, spec)
    if spec.channels == "RGB":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif spec.channels == "GRAY":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[:, :, None]
    pixels = image.astype(np.float32)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    tensor = (pixels - mean) / std
    if spec.layout == "NCHW":
        tensor = np.transpose(tensor, (2, 0, 1))
    return np.ascontiguousarray(tensor, dtype=np.float32)


def load_batch(paths: Sequence[Path], spec: InputSpec) -> np.ndarray:
    return np.stack([to_tensor(read_image(p), spec) for p in paths]) if paths else np.zeros((0,), np.float32)


def describe(spec: InputSpec) -> dict[str, object]:
    """The preprocessing contract as recorded in the manifest and used by generated loaders."""
    return {
        "size_hw": list(spec.size),
        "resize": spec.resize,
        **(LETTERBOX_FACTS if spec.resize == "letterbox" else {}),
        "interpolation": "bilinear",
        "channels": spec.channels,
        "pixel_range": [0, 255],
        "mean": list(spec.mean),
        "std": list(spec.std),
        "formula": "(pixel - mean) / std",
        "layout": spec.layout,
        "dtype": "float32",
    }
