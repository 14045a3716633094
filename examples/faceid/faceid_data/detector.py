"""Detector images for YuNet: whole photos placed on a 640x640 frame, as the app feeds the detector.

YuNet takes a 640x640 BGR frame. Each view puts one or four of the source photos on a black
640x640 canvas without distorting them (one scale for both axes; black is also what
``cv2.FaceDetectorYN`` pads with):

- ``letterbox``: the photo scaled to fit and centred -- what an app does to a camera frame;
- ``scaled``: the photo smaller (faces smaller), somewhere in the frame, maybe mirrored, with some
  brightness and contrast change;
- ``mosaic``: four different photos, each fitted into a 320x320 quarter (smaller still, maybe
  mirrored), with several faces in one frame at several strides.

The evaluation split holds every letterbox view plus scaled views and mosaics; calibration holds
only other scaled views and mosaics (other seeds), none identical to an evaluation image. Positions,
scales and photometry come from per-view seeds, so a view never changes when others are added.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceid_data import PrepareError, dataset
from faceid_data import augment as aug
from faceid_data.faces import DETECTION_SCORE, Photo

DETECTOR_DIR = "detector"
EVAL_DIR = f"{DETECTOR_DIR}/eval"
CALIBRATION_DIR = f"{DETECTOR_DIR}/calibration"
VIEWS_FILE = f"{DETECTOR_DIR}/views.csv"
SIZE = 640
"""YuNet's input side in packager.toml."""
FILL = 0
SCALED_EVAL_PER_PHOTO = 3
EVAL_MOSAICS = 24
"""With 9 photos: 9 letterbox + 27 scaled + 24 mosaics = 60 evaluation frames (52 with 7)."""
CALIBRATION_COUNT = 64
"""Scaled views first (round-robin over photos), then as many mosaics. packager holds out every 4th
calibration image as a check image, so both kinds are in both parts."""
SCALE_RANGE = (0.35, 0.9)
"""A scaled view's size as a share of the letterbox size: faces about 1/3 to 9/10 as big."""
MOSAIC_SCALE_RANGE = (0.7, 1.0)
"""A mosaic tile's size as a share of the size that fits its 320x320 quarter."""
CHECK_SCORE = DETECTION_SCORE
"""The score threshold of the YuNet task check (yunet_check.SCORE_THRESHOLD), for the FP32 figures."""
LETTERBOX, SCALED, MOSAIC = "letterbox", "scaled", "mosaic"


@dataclass(frozen=True)
class Placement:
    """One photo on the canvas: its top-left corner and size in canvas pixels."""

    photo: str
    x: int
    y: int
    width: int
    height: int
    flip: bool = False

    def describe(self) -> str:
        return f"{self.photo}@{self.x},{self.y}:{self.width}x{self.height}{':flip' if self.flip else ''}"


@dataclass(frozen=True)
class DetectorView:
    split: str
    index: int
    kind: str
    placements: tuple[Placement, ...]
    brightness: float = 0.0
    contrast: float = 1.0

    @property
    def relpath(self) -> str:
        """Relative to the data folder; the index comes first so a sorted folder keeps plan order."""
        folder = EVAL_DIR if self.split == "eval" else CALIBRATION_DIR
        return f"{folder}/{self.index:03d}_{self.kind}.png"


def _fit(photo: Photo, box: int, share: float = 1.0) -> tuple[int, int]:
    """(width, height) of ``photo`` scaled by ``share`` of the scale that fits it in ``box`` x ``box``."""
    height, width = photo.image.shape[:2]
    scale = min(box / height, box / width) * share
    return max(1, min(box, round(width * scale))), max(1, min(box, round(height * scale)))


def letterbox(photo: Photo, index: int) -> DetectorView:
    width, height = _fit(photo, SIZE)
    placement = Placement(photo.key, (SIZE - width) // 2, (SIZE - height) // 2, width, height)
    return DetectorView("eval", index, LETTERBOX, (placement,))


def _photometry(rng: np.random.Generator) -> tuple[float, float, bool]:
    """Brightness, contrast and flip, drawn in a fixed order (the mild tier's ranges)."""
    brightness = float(rng.uniform(-aug.MAX_BRIGHTNESS, aug.MAX_BRIGHTNESS))
    contrast = float(rng.uniform(*aug.CONTRAST_RANGE))
    return brightness, contrast, bool(rng.random() < aug.FLIP_PROBABILITY)


def scaled(photo: Photo, split: str, index: int, k: int) -> DetectorView:
    """The photo's ``k``-th scaled view in ``split`` (the seed), written as frame ``index``."""
    rng = np.random.default_rng(aug.seed_for(DETECTOR_DIR, split, SCALED, photo.key, str(k)))
    width, height = _fit(photo, SIZE, float(rng.uniform(*SCALE_RANGE)))
    x, y = int(rng.integers(0, SIZE - width + 1)), int(rng.integers(0, SIZE - height + 1))
    brightness, contrast, flip = _photometry(rng)
    placement = Placement(photo.key, x, y, width, height, flip)
    return DetectorView(split, index, SCALED, (placement,), brightness, contrast)


def mosaic(photos: Sequence[Photo], split: str, index: int, k: int) -> DetectorView:
    """Mosaic ``k`` of ``split``: four different photos, one per 320x320 quarter, picked by its seed."""
    if len(photos) < 4:
        raise PrepareError(f"a mosaic needs 4 photos, only {len(photos)} were found")
    rng = np.random.default_rng(aug.seed_for(DETECTOR_DIR, split, MOSAIC, str(k)))
    chosen = [photos[int(i)] for i in rng.permutation(len(photos))[:4]]
    brightness, contrast, _ = _photometry(rng)
    half = SIZE // 2
    placements = []
    for quarter, photo in enumerate(chosen):
        width, height = _fit(photo, half, float(rng.uniform(*MOSAIC_SCALE_RANGE)))
        x = (quarter % 2) * half + int(rng.integers(0, half - width + 1))
        y = (quarter // 2) * half + int(rng.integers(0, half - height + 1))
        flip = bool(rng.random() < aug.FLIP_PROBABILITY)
        placements.append(Placement(photo.key, x, y, width, height, flip))
    return DetectorView(split, index, MOSAIC, tuple(placements), brightness, contrast)


def plan_eval(photos: Sequence[Photo]) -> list[DetectorView]:
    """Every photo letterboxed, then its scaled views, then the mosaics; indexed in that order."""
    views = [letterbox(photo, i) for i, photo in enumerate(photos)]
    for k in range(SCALED_EVAL_PER_PHOTO):
        views += [scaled(photo, "eval", len(views) + i, k) for i, photo in enumerate(photos)]
    views += [mosaic(photos, "eval", len(views) + k, k) for k in range(EVAL_MOSAICS)]
    return views


def plan_calibration(photos: Sequence[Photo], count: int = CALIBRATION_COUNT) -> list[DetectorView]:
    """``count // 2`` scaled views (round-robin over photos), then mosaics; other seeds than eval's."""
    n_scaled = count // 2
    views = [scaled(photos[j % len(photos)], "calibration", j, j // len(photos)) for j in range(n_scaled)]
    return views + [mosaic(photos, "calibration", n_scaled + k, k) for k in range(count - n_scaled)]


def render(view: DetectorView, images: dict[str, np.ndarray]) -> np.ndarray:
    """The 640x640 BGR frame of ``view``; photometry is applied to the photos, not the black fill."""
    canvas = np.full((SIZE, SIZE, 3), FILL, np.uint8)
    params = aug.ViewParams(brightness=view.brightness, contrast=view.contrast)
    for p in view.placements:
        image = images[p.photo]
        shrink = p.width < image.shape[1]
        resized = cv2.resize(
            image, (p.width, p.height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
        if p.flip:
            resized = np.ascontiguousarray(resized[:, ::-1])
        if view.brightness or view.contrast != 1:
            resized = aug.photometric(resized, params)
        canvas[p.y : p.y + p.height, p.x : p.x + p.width] = resized
    return canvas


def write_views(data_dir: Path, views: Iterable[DetectorView], photos: Sequence[Photo]) -> dict[str, bytes]:
    """Render and write each view; returns the PNG bytes by relative path."""
    images = {photo.key: photo.image for photo in photos}
    if len(images) != len(photos):
        keys = sorted(photo.key for photo in photos)
        raise PrepareError(f"two photos share a file name ({keys}); rename one in sources.toml")
    return dataset.write_pngs(data_dir, ((v.relpath, dataset.encode_png(render(v, images))) for v in views))


def check_disjoint(written: dict[str, bytes]) -> None:
    """No calibration frame may be an evaluation frame (it would flatter static INT8)."""
    dataset.check_disjoint(
        written, EVAL_DIR, CALIBRATION_DIR, "detector calibration frames identical to evaluation frames"
    )


def views_csv(views: Iterable[DetectorView], photos: Sequence[Photo]) -> str:
    """Provenance of every frame: its photos (with their package), placement and photometry."""
    origin = {photo.key: photo.origin for photo in photos}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "kind", "sources", "placements", "brightness", "contrast"])
    for view in views:
        writer.writerow(
            [
                view.relpath,
                view.kind,
                ";".join(origin[p.photo] for p in view.placements),
                ";".join(p.describe() for p in view.placements),
                round(view.brightness, 3),
                round(view.contrast, 3),
            ]
        )
    return buffer.getvalue()


@dataclass(frozen=True)
class DetectorCounts:
    """What FP32 YuNet (``cv2.FaceDetectorYN``, score >= CHECK_SCORE) finds in the evaluation frames."""

    frames: int
    faces: int
    by_kind: dict[str, int]
    without_faces: int

    def summary(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in self.by_kind.items())
        return (
            f"{self.faces} faces in {self.frames} frames ({kinds}); {self.without_faces} frames without "
            f"a face at score >= {CHECK_SCORE:g}"
        )


def count_faces(yunet: Path, data_dir: Path, views: Sequence[DetectorView]) -> DetectorCounts:
    """FP32 faces per evaluation frame, with OpenCV's own YuNet pipeline (a smoke test of the data)."""
    detector = cv2.FaceDetectorYN.create(str(yunet), "", (SIZE, SIZE), CHECK_SCORE, 0.3, 5000)
    by_kind: dict[str, int] = {}
    without = 0
    for view in views:
        _, faces = detector.detect(cv2.imread(str(data_dir / view.relpath), cv2.IMREAD_COLOR))
        found = 0 if faces is None else len(faces)
        by_kind[view.kind] = by_kind.get(view.kind, 0) + found
        without += found == 0
    return DetectorCounts(len(views), sum(by_kind.values()), by_kind, without)
