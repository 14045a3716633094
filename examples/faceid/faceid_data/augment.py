"""Deterministic augmented views of a face: the stand-in for more photos of each person.

Geometry (rotation, scale, shift) is applied to the photo around the face while the alignment
landmarks stay put, so the aligned crop is off by exactly that much -- like an app's imperfect
detector -- and the borders are real pixels, not black fill. Photometry (brightness, contrast,
blur, JPEG, flip) is applied to the 112x112 crop so its strength is the same for every face,
whatever the photo's resolution. Each view's parameters come from its own seed, so a view does
not change when other views are added or reordered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass

import cv2
import numpy as np

TEMPLATE_EYE_DISTANCE = 35.24
"""Pixels between the eye points of the 112x112 template that ``alignCrop`` maps faces onto."""

MAX_ANGLE_DEG = 8.0
SCALE_RANGE = (0.92, 1.08)
MAX_SHIFT_PX = 4.0
MAX_BRIGHTNESS = 25.0
CONTRAST_RANGE = (0.8, 1.2)
BLUR_PROBABILITY = 0.4
BLUR_SIGMA_RANGE = (0.5, 1.2)
JPEG_PROBABILITY = 0.6
JPEG_QUALITY_RANGE = (60, 90)
FLIP_PROBABILITY = 0.5


@dataclass(frozen=True)
class ViewParams:
    """Everything that makes one view; the defaults are the clean, un-augmented crop."""

    angle_deg: float = 0.0
    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    brightness: float = 0.0
    contrast: float = 1.0
    blur_sigma: float = 0.0
    jpeg_quality: int = 0
    flip: bool = False

    def describe(self) -> dict[str, float | int | bool]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


CLEAN = ViewParams()


def seed_for(*parts: str) -> int:
    """A stable 64-bit seed from names (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:8], "little")


def sample_params(seed: int) -> ViewParams:
    """Every value is always drawn, in a fixed order, so the sequence never depends on branches."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(-MAX_ANGLE_DEG, MAX_ANGLE_DEG)
    scale = rng.uniform(*SCALE_RANGE)
    shift_x, shift_y = rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX, size=2)
    brightness = rng.uniform(-MAX_BRIGHTNESS, MAX_BRIGHTNESS)
    contrast = rng.uniform(*CONTRAST_RANGE)
    blur_on, blur_sigma = rng.random() < BLUR_PROBABILITY, rng.uniform(*BLUR_SIGMA_RANGE)
    jpeg_on = rng.random() < JPEG_PROBABILITY
    quality = int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1))
    flip = bool(rng.random() < FLIP_PROBABILITY)
    return ViewParams(
        angle_deg=float(angle),
        scale=float(scale),
        shift_x=float(shift_x),
        shift_y=float(shift_y),
        brightness=float(brightness),
        contrast=float(contrast),
        blur_sigma=float(blur_sigma) if blur_on else 0.0,
        jpeg_quality=quality if jpeg_on else 0,
        flip=flip,
    )


def warp_photo(image: np.ndarray, row: np.ndarray, params: ViewParams) -> np.ndarray:
    """Rotate/scale the photo about the face's landmark centre and shift it by crop-sized pixels."""
    if params.angle_deg == 0 and params.scale == 1 and params.shift_x == 0 and params.shift_y == 0:
        return image
    points = row[4:14].reshape(5, 2).astype(np.float64)
    centre = points.mean(axis=0)
    photo_px_per_crop_px = float(np.linalg.norm(points[0] - points[1])) / TEMPLATE_EYE_DISTANCE
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), params.angle_deg, params.scale)
    matrix[:, 2] += np.array([params.shift_x, params.shift_y]) * photo_px_per_crop_px
    height, width = image.shape[:2]
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


def photometric(crop: np.ndarray, params: ViewParams) -> np.ndarray:
    """Capture-like changes on the aligned crop; returns a new uint8 BGR image."""
    out = crop.astype(np.float32)
    if params.contrast != 1 or params.brightness != 0:
        mean = float(out.mean())
        out = (out - mean) * params.contrast + mean + params.brightness
    result = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if params.blur_sigma > 0:
        result = cv2.GaussianBlur(result, (0, 0), params.blur_sigma)
    if params.jpeg_quality:
        ok, encoded = cv2.imencode(".jpg", result, [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality])
        if not ok:
            raise RuntimeError("OpenCV failed to JPEG-encode a 112x112 crop")
        result = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    if params.flip:
        result = np.ascontiguousarray(result[:, ::-1])
    return result


Align = Callable[[np.ndarray, np.ndarray], np.ndarray]


def render_view(image: np.ndarray, row: np.ndarray, params: ViewParams, align: Align) -> np.ndarray:
    """One aligned 112x112 BGR view of the face described by ``row`` in ``image``."""
    return photometric(align(warp_photo(image, row, params), row), params)
