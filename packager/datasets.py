"""Calibration images and evaluation pairs: discovery, parsing, and clear errors pointing at lines."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from packager.config import CalibrationSpec, InputSpec
from packager.errors import DataError
from packager.preprocess import IMAGE_SUFFIXES, read_image, to_tensor

log = logging.getLogger(__name__)


def calibration_sources(spec: CalibrationSpec) -> list[Path]:
    """The candidate calibration files, in a stable order (folder, list file, or a single .npy)."""
    src = spec.images
    if not src.exists():
        raise DataError(src, "calibration data not found", "fix [models].calibration.images")
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(
                src, "calibration folder holds no images (.png/.jpg/...)", "add images or fix the path"
            )
        return files
    if src.suffix == ".npy":
        return [src]
    lines = [ln.strip() for ln in src.read_text(encoding="utf-8").splitlines()]
    files = [(src.parent / ln).resolve() for ln in lines if ln and not ln.startswith("#")]
    if not files:
        raise DataError(src, "calibration list file is empty", "list one image path per line")
    return files


def load_calibration(
    spec: CalibrationSpec, input_spec: InputSpec, shape: list[int]
) -> tuple[np.ndarray, list[str]]:
    """Preprocessed calibration tensors [N, ...] plus warnings about skipped files.

    Unreadable images are skipped (one bad file in 200 should not stop a release), but fewer than
    ``min_count`` usable ones is an error: a static INT8 model calibrated on a handful is a silent risk.
    """
    sources = calibration_sources(spec)
    warnings: list[str] = []
    if len(sources) == 1 and sources[0].suffix == ".npy":
        array = np.load(sources[0]).astype(np.float32)
        if list(array.shape[1:]) != list(shape[1:]):
            raise DataError(
                sources[0],
                f"calibration array shape {list(array.shape)} does not match input [N, {shape[1:]}]",
                "save preprocessed tensors with the model's input shape",
            )
        tensors = list(array[: spec.count])
    else:
        tensors = []
        for path in sources:
            if len(tensors) >= spec.count:
                break
            try:
                tensors.append(to_tensor(read_image(path), input_spec))
            except DataError as exc:
                warnings.append(f"skipped calibration image: {exc}")
                log.warning("skipped calibration image %s", path)
    if len(tensors) < spec.min_count:
        raise DataError(
            spec.images,
            f"only {len(tensors)} usable calibration images, at least {spec.min_count} required",
            "add readable images or lower calibration.min_count",
        )
    return np.stack(tensors).astype(np.float32), warnings


@dataclass(frozen=True)
class EvaluationSet:
    """Unique images plus index pairs into them, so each image is run once per artifact."""

    images: list[Path]
    pairs: np.ndarray
    """int [M, 2] indices into ``images``."""
    labels: np.ndarray
    """int [M], 1 same / 0 different."""
    source: Path


def load_pairs(path: Path) -> EvaluationSet:
    if not path.is_file():
        raise DataError(path, "pairs file not found", "fix [models].evaluation.pairs")
    index: dict[Path, int] = {}
    by_text: dict[str, int] = {}
    """Pairs files repeat each image thousands of times: resolve and stat each distinct path once."""
    pairs: list[tuple[int, int]] = []
    labels: list[int] = []
    base = path.parent.resolve()
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or parts[2] not in ("0", "1"):
            raise DataError(
                f"{path}:{lineno}",
                f"malformed line {line!r}",
                "each line must be `image1 image2 label` with label 1 (same) or 0 (different)",
            )
        ids = []
        for rel in parts[:2]:
            if rel not in by_text:
                image = Path(os.path.normpath(base / rel))
                if image not in index:
                    if not image.is_file():
                        raise DataError(
                            f"{path}:{lineno}", f"image {rel!r} does not exist ({image})", "fix the path"
                        )
                    index[image] = len(index)
                by_text[rel] = index[image]
            ids.append(by_text[rel])
        pairs.append((ids[0], ids[1]))
        labels.append(int(parts[2]))
    if not pairs:
        raise DataError(path, "no pairs in the file", "add `image1 image2 label` lines")
    label_arr = np.asarray(labels, dtype=np.int64)
    if label_arr.min() == label_arr.max():
        raise DataError(
            path, "all pairs have the same label", "include both same (1) and different (0) pairs"
        )
    return EvaluationSet(
        images=list(index), pairs=np.asarray(pairs, dtype=np.int64), labels=label_arr, source=path
    )


def load_evaluation_tensors(evalset: EvaluationSet, input_spec: InputSpec) -> np.ndarray:
    return np.stack([to_tensor(read_image(p), input_spec) for p in evalset.images]).astype(np.float32)
