"""The shared calibration step: calibrate once per model, and let every static recipe build on it.

Calibration (one histogram pass over the images, then choosing the best range setting) is the
expensive part of static INT8; int8-qdq and mixed both start from its result. As a step of its
own it is cached once, shows up in ``packager graph``, and editing only the mixed-precision
limits no longer recalibrates. Its output is a folder of plain files, so the cache can hold it.

Tuning and check parts. The calibration images are split once, deterministically
(:func:`split_calibration`): every :data:`CHECK_EVERY`-th image, in the order the images are read
(sorted file names), is a *check* image, the rest *tune*. Everything that chooses uses the tuning
part only: the ranges are collected on it, the range setting (percentile cut) is scored on its
first ``probe_images`` (the *probe*), and mixed precision ranks nodes and measures its search on
them. The check images only measure: a figure on them is one on faces no choice was fitted to,
which is what mixed precision stops on. (Stopping on the images the search tunes on stops where
their figure first touches the target, a figure biased towards them: SFace's mixed variant stopped
at 0.995 on its probe images and measured 0.994 on other real faces.)
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from packager.quantize.calibration import (
    QdqSettings,
    calibrate,
    choose_calibration,
    preprocess_for_quantization,
)
from packager.validate.metrics import cosine_stats
from packager.validate.runners import OrtRunner

if TYPE_CHECKING:  # config imports the recipe registry: no import back at run time
    from packager.config import CalibrationSpec

PREPROCESSED = "preprocessed.onnx"
INT8 = "int8.onnx"
RANGES = "ranges.json"
PROBE = "probe.npy"
EXPECTED = "expected.npy"
CHECK = "check.npy"
CHECK_EXPECTED = "check_expected.npy"
DETAILS = "calibration.json"

CHECK_EVERY = 4
"""Every 4th calibration image is held out as a check image (16 of the example's 64). Three quarters
stay for the ranges (DESIGN §5.16: 204 images gave no gain over 48). On SFace, holding out every 3rd,
4th, 5th or 8th image all led mixed precision to 0.9955-0.9963 on the unseen evaluation faces; more
check images make its stop less a matter of which few faces were held out."""


def split_calibration(count: int, every: int = CHECK_EVERY) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(tuning, check)`` of ``count`` calibration images: image ``i`` is a check image when
    ``i % every == every - 1`` (3, 7, 11, ... for 4). Disjoint, together all of them, in order.

    Spread through the sorted order rather than a block at its end, so a folder sorted by person or
    capture covers the same people in both parts. Fewer than ``every`` images leave no check image.
    """
    if every < 2:
        raise ValueError(f"every must be at least 2 (one check image per {every} leaves none to tune)")
    index = np.arange(count)
    check = index % every == every - 1
    return index[~check], index[check]


def save_ranges(ranges: object, path: Path) -> None:
    """ORT's TensorsData as JSON; float32 values round-trip exactly through Python floats."""
    data = {
        "method": ranges.calibration_method.name,  # type: ignore[attr-defined]
        "tensors": {
            name: {
                k: [np.asarray(getattr(td, k)).tolist(), str(np.asarray(getattr(td, k)).dtype)]
                for k in td._attrs
            }
            for name, td in sorted(ranges.data.items())  # type: ignore[attr-defined]
        },
    }
    path.write_text(json.dumps(data, sort_keys=True))


def load_ranges(path: Path) -> object:
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    data = json.loads(path.read_text())
    tensors = {
        name: TensorData(**{k: np.asarray(value, dtype=dtype) for k, (value, dtype) in fields.items()})
        for name, fields in data["tensors"].items()
    }
    return TensorsData(CalibrationMethod[data["method"]], tensors)


def run_calibration(
    reference: Path,
    data: np.ndarray,
    spec: CalibrationSpec,
    probe_count: int,
    out: Path,
    progress: Callable[[int, int], None] | None = None,
    output: str | None = None,
    check_every: int = CHECK_EVERY,
) -> dict[str, object]:
    """Calibrate ``reference`` on the tuning part of ``data`` and write the folder :class:`Calibrated` reads.

    ``data`` is split by :func:`split_calibration` (``check_every``); ranges come from the tuning
    part, candidate settings are scored on its first ``probe_count`` images, and the chosen model
    is then measured on the check part (recorded, never compared). ``output`` is the configured
    output (``[models].output.name``; None = the model's first): the candidates are scored on it,
    and every later search (mixed precision) reads it from here.
    """
    tuning, check = (data[i] for i in split_calibration(len(data), check_every))
    pre = preprocess_for_quantization(reference, out / PREPROCESSED)
    candidates = calibrate(pre, tuning, spec, progress)
    settings = QdqSettings.from_spec(spec)
    probe = tuning[:probe_count]
    runner = OrtRunner(reference, "reference", output=output)
    expected = runner.run(probe)
    check_expected = runner.run(check) if len(check) else np.zeros((0, *expected.shape[1:]), np.float32)
    with tempfile.TemporaryDirectory(prefix="packager-calibrate-") as tmp:
        choice = choose_calibration(
            pre, candidates, settings, probe, expected, Path(tmp), output=runner.output_name
        )
        choice.path.replace(out / INT8)
    on_check = (
        cosine_stats(check_expected, OrtRunner(out / INT8, "reference", output=output).run(check)).mean
        if len(check)
        else None
    )
    save_ranges(choice.ranges, out / RANGES)
    np.save(out / PROBE, probe)
    np.save(out / EXPECTED, expected)
    np.save(out / CHECK, check)
    np.save(out / CHECK_EXPECTED, check_expected)
    details: dict[str, object] = {
        "calibration": choice.label,
        "calibration_candidates": {k: round(v, 6) for k, v in choice.scores.items()},
        "calibration_images": len(data),
        "scored_output": runner.output_name,
        "check_every": check_every,
        "tuning_images": len(tuning),
        "check_images": len(check),
        "probe_images": len(probe),
        "calibration_check_mean_cosine": None if on_check is None else round(on_check, 6),
        "per_channel": settings.per_channel,
        "reduce_range": settings.reduce_range,
        "activation_type": settings.activation_type,
        "weight_type": settings.weight_type,
    }
    (out / DETAILS).write_text(json.dumps(details, sort_keys=True))
    return details


@dataclass(frozen=True)
class Calibrated:
    """Read side of the calibration step's folder."""

    folder: Path

    @property
    def preprocessed(self) -> Path:
        return self.folder / PREPROCESSED

    @property
    def int8(self) -> Path:
        """Every quantizable node in INT8, with the chosen ranges."""
        return self.folder / INT8

    def details(self) -> dict[str, object]:
        return json.loads((self.folder / DETAILS).read_text())

    def settings(self) -> QdqSettings:
        d = self.details()
        return QdqSettings(
            per_channel=bool(d["per_channel"]),
            reduce_range=bool(d["reduce_range"]),
            activation_type=str(d["activation_type"]),
            weight_type=str(d["weight_type"]),
        )

    def ranges(self) -> object:
        return load_ranges(self.folder / RANGES)

    def probe(self) -> np.ndarray:
        """The tuning images that score choices (the first ``probe_images`` of the tuning part)."""
        return np.load(self.folder / PROBE)

    def expected(self) -> np.ndarray:
        """FP32 outputs on :meth:`probe`, reference mode, of :meth:`scored_output`."""
        return np.load(self.folder / EXPECTED)

    def check(self) -> np.ndarray:
        """The check images: never calibrated on or chosen with; may be empty (few images)."""
        return np.load(self.folder / CHECK)

    def check_expected(self) -> np.ndarray:
        """FP32 outputs on :meth:`check`, reference mode, of :meth:`scored_output`."""
        return np.load(self.folder / CHECK_EXPECTED)

    def scored_output(self) -> str:
        """The output every accuracy comparison in static quantization reads (the configured one)."""
        return str(self.details()["scored_output"])
