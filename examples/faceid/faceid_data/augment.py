"""Deterministic augmented views of a face: the stand-in for more photos of each person.

Two tiers. *Mild* views (small rotation, scale and shift, brightness, contrast, light blur, light
JPEG, flip) look like ordinary captures. *Hard* views look like the bad captures a phone also
produces: a larger pose/alignment error plus one chosen degradation -- a face only 24-40 px wide,
heavy JPEG, motion or strong Gaussian blur, low light with sensor noise, an occluder (sunglasses,
a mask, a hand) or a grayscale (IR-like) image -- and sometimes more of them on top.

Geometry (rotation, scale, shift) is applied to the photo around the face while the alignment
landmarks stay put, so the aligned crop is off by exactly that much -- like an app's imperfect
detector -- and the borders are real pixels, not black fill. Photometry is applied to the 112x112
crop so its strength is the same for every face, whatever the photo's resolution, in the order a
camera would cause it: occluder, exposure, blur, sensor resolution, noise, colour, JPEG; a
low-resolution face is then upscaled back to 112x112, as an app aligning a small face does. Each
view's parameters come from its own seed, so a view does not change when other views are added or
reordered; the noise pattern has its own recorded seed too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass

import cv2
import numpy as np

TEMPLATE_EYE_DISTANCE = 35.24
"""Pixels between the eye points of the 112x112 template that ``alignCrop`` maps faces onto."""
CROP = 112

# Mild tier: ordinary captures.
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

# Hard tier: bad captures. Geometry is always the larger range; one degradation is chosen per view
# (the caller spreads them evenly) and each of the others is added with HARD_EXTRA_PROBABILITY.
HARD_MAX_ANGLE_DEG = 18.0
HARD_SCALE_RANGE = (0.85, 1.15)
HARD_MAX_SHIFT_PX = 8.0
LOW_RES_RANGE = (24, 40)
"""Side of the face crop at capture (a distant face), before it is upscaled back to 112."""
HARD_JPEG_QUALITY_RANGE = (10, 25)
MOTION_BLUR_PROBABILITY = 0.5
"""Within the blur degradation: motion blur, else strong Gaussian blur."""
MOTION_BLUR_RANGE = (7, 13)
"""Length of the motion-blur streak in crop pixels."""
HARD_BLUR_SIGMA_RANGE = (1.8, 3.0)
EXPOSURE_RANGE = (0.35, 0.6)
NOISE_SIGMA_RANGE = (4.0, 10.0)
"""Gaussian sensor noise (in 0..255 levels) added in low light."""
OCCLUDERS = ("sunglasses", "mask", "hand")
OCCLUSION_LEVEL_RANGE = (20, 235)
"""Grey level of the occluder, dark (sunglasses, a dark mask) to light (a medical mask, a hand)."""
GRAYSCALE = "grayscale"
DEGRADATIONS = ("low_res", "jpeg", "blur", "low_light", "occlusion", GRAYSCALE)
HARD_EXTRA_PROBABILITY = 0.1


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
    # Hard-tier degradations; the defaults mean "off".
    occluder: str = ""
    """Which occluder the rectangle below stands for (for views.csv)."""
    occlusion: tuple[int, int, int, int] = (0, 0, 0, 0)
    """x0, y0, x1, y1 of a filled rectangle in crop pixels."""
    occlusion_level: int = 0
    exposure: float = 1.0
    motion_blur_px: int = 0
    motion_angle_deg: float = 0.0
    low_res_px: int = 0
    noise_sigma: float = 0.0
    noise_seed: int = 0
    grayscale: bool = False

    def describe(self) -> dict[str, float | int | bool | str]:
        out: dict[str, float | int | bool | str] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float):
                out[key] = round(value, 3)
            elif isinstance(value, tuple):
                out[key] = ":".join(str(v) for v in value)
            else:
                out[key] = value
        return out


CLEAN = ViewParams()


def seed_for(*parts: str) -> int:
    """A stable 64-bit seed from names (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:8], "little")


def sample_params(seed: int) -> ViewParams:
    """A mild view. Every value is always drawn, in a fixed order, so the sequence never depends
    on branches."""
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


def _occluder_box(kind: str, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Where an occluder sits on the aligned 112x112 template (eyes at y~52, mouth at y~92).

    Always draws four values so the caller's sequence does not depend on ``kind``.
    """
    a, b, c, d = (float(v) for v in rng.random(4))
    if kind == "sunglasses":  # a band over both eyes
        return (int(20 + 8 * a), int(40 + 5 * b), int(84 + 8 * c), int(60 + 5 * d))
    if kind == "mask":  # mouth and chin, sometimes the nose tip
        return (int(14 + 10 * a), int(68 + 10 * b), int(88 + 10 * c), CROP)
    # a hand over one side of the face: 34-47 px wide, left or right
    side = 34 + int(14 * c)
    x0 = int(4 + 48 * a) if a < 0.5 else int(CROP - side - 4 - 48 * (a - 0.5))
    y0 = int(24 + 40 * b)
    return (x0, y0, x0 + side, min(y0 + side + int(10 * d), CROP))


def sample_hard_params(seed: int, primary: str) -> ViewParams:
    """A hard view: larger geometry, the ``primary`` degradation, and maybe others on top.

    Every value is always drawn in a fixed order, so the sequence never depends on branches.
    """
    if primary not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {primary!r}; expected one of {DEGRADATIONS}")
    rng = np.random.default_rng(seed)
    angle = rng.uniform(-HARD_MAX_ANGLE_DEG, HARD_MAX_ANGLE_DEG)
    scale = rng.uniform(*HARD_SCALE_RANGE)
    shift_x, shift_y = rng.uniform(-HARD_MAX_SHIFT_PX, HARD_MAX_SHIFT_PX, size=2)
    brightness = rng.uniform(-MAX_BRIGHTNESS, MAX_BRIGHTNESS)
    contrast = rng.uniform(*CONTRAST_RANGE)
    flip = bool(rng.random() < FLIP_PROBABILITY)
    extra = rng.random(len(DEGRADATIONS)) < HARD_EXTRA_PROBABILITY
    on = {name: bool(name == primary or e) for name, e in zip(DEGRADATIONS, extra, strict=True)}
    low_res = int(rng.integers(LOW_RES_RANGE[0], LOW_RES_RANGE[1] + 1))
    quality = int(rng.integers(HARD_JPEG_QUALITY_RANGE[0], HARD_JPEG_QUALITY_RANGE[1] + 1))
    motion = bool(rng.random() < MOTION_BLUR_PROBABILITY)
    motion_px = int(rng.integers(MOTION_BLUR_RANGE[0], MOTION_BLUR_RANGE[1] + 1))
    motion_angle = rng.uniform(0.0, 180.0)
    sigma = rng.uniform(*HARD_BLUR_SIGMA_RANGE)
    exposure = rng.uniform(*EXPOSURE_RANGE)
    noise = rng.uniform(*NOISE_SIGMA_RANGE)
    noise_seed = int(rng.integers(0, 2**31))
    occluder = OCCLUDERS[int(rng.integers(len(OCCLUDERS)))]
    box = _occluder_box(occluder, rng)
    level = int(rng.integers(OCCLUSION_LEVEL_RANGE[0], OCCLUSION_LEVEL_RANGE[1] + 1))
    return ViewParams(
        angle_deg=float(angle),
        scale=float(scale),
        shift_x=float(shift_x),
        shift_y=float(shift_y),
        brightness=float(brightness),
        contrast=float(contrast),
        blur_sigma=float(sigma) if on["blur"] and not motion else 0.0,
        jpeg_quality=quality if on["jpeg"] else 0,
        flip=flip,
        occluder=occluder if on["occlusion"] else "",
        occlusion=box if on["occlusion"] else (0, 0, 0, 0),
        occlusion_level=level if on["occlusion"] else 0,
        exposure=float(exposure) if on["low_light"] else 1.0,
        motion_blur_px=motion_px if on["blur"] and motion else 0,
        motion_angle_deg=float(motion_angle) if on["blur"] and motion else 0.0,
        low_res_px=low_res if on["low_res"] else 0,
        noise_sigma=float(noise) if on["low_light"] else 0.0,
        noise_seed=noise_seed if on["low_light"] else 0,
        grayscale=on[GRAYSCALE],
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


def motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A normalised straight streak ``length`` pixels long at ``angle_deg`` (camera shake)."""
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    centre = ((length - 1) / 2.0, (length - 1) / 2.0)
    rotation = cv2.getRotationMatrix2D(centre, angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length), flags=cv2.INTER_LINEAR)
    return kernel / float(kernel.sum())


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV failed to JPEG-encode a face crop")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


def photometric(crop: np.ndarray, params: ViewParams) -> np.ndarray:
    """Capture-like changes on the aligned crop, in the order a camera causes them; returns a new
    uint8 BGR image. With the hard-tier fields off this is exactly the mild pipeline."""
    result = crop.copy()
    if params.occlusion != (0, 0, 0, 0):
        x0, y0, x1, y1 = params.occlusion
        result[y0:y1, x0:x1] = params.occlusion_level
    out = result.astype(np.float32)
    if params.contrast != 1 or params.brightness != 0:
        mean = float(out.mean())
        out = (out - mean) * params.contrast + mean + params.brightness
    if params.exposure != 1:
        out = np.clip(out, 0, 255) * params.exposure
    result = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if params.blur_sigma > 0:
        result = cv2.GaussianBlur(result, (0, 0), params.blur_sigma)
    if params.motion_blur_px:
        kernel = motion_kernel(params.motion_blur_px, params.motion_angle_deg)
        result = cv2.filter2D(result, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    if params.low_res_px:
        side = params.low_res_px
        result = cv2.resize(result, (side, side), interpolation=cv2.INTER_AREA)
    if params.noise_sigma > 0:
        noise = np.random.default_rng(params.noise_seed).normal(0.0, params.noise_sigma, result.shape)
        result = np.clip(np.rint(result + noise), 0, 255).astype(np.uint8)
    if params.grayscale:
        result = cv2.cvtColor(cv2.cvtColor(result, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if params.jpeg_quality:
        result = _jpeg(result, params.jpeg_quality)
    if params.low_res_px:
        result = cv2.resize(result, (CROP, CROP), interpolation=cv2.INTER_LINEAR)
    if params.flip:
        result = np.ascontiguousarray(result[:, ::-1])
    return result


Align = Callable[[np.ndarray, np.ndarray], np.ndarray]


def render_view(image: np.ndarray, row: np.ndarray, params: ViewParams, align: Align) -> np.ndarray:
    """One aligned 112x112 BGR view of the face described by ``row`` in ``image``."""
    return photometric(align(warp_photo(image, row, params), row), params)
