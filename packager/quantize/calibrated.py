"""The shared calibration step: calibrate once per model, and let every static recipe build on it.

Calibration (one histogram pass over the images, then choosing the best range setting) is the
expensive part of static INT8; int8-qdq and mixed both start from its result. As a step of its
own it is cached once, shows up in ``packager graph``, and editing only the mixed-precision
limits no longer recalibrates. Its output is a folder of plain files, so the cache can hold it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from packager.config import CalibrationSpec
from packager.quantize.calibration import (
    QdqSettings,
    calibrate,
    choose_calibration,
    preprocess_for_quantization,
)
from packager.validate.runners import OrtRunner

PREPROCESSED = "preprocessed.onnx"
INT8 = "int8.onnx"
RANGES = "ranges.json"
PROBE = "probe.npy"
EXPECTED = "expected.npy"
DETAILS = "calibration.json"


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
) -> dict[str, object]:
    """Calibrate ``reference`` on ``data`` and write the folder :class:`Calibrated` reads.

    ``output`` is the configured output (``[models].output.name``; None = the model's first): the
    candidate ranges are scored on it, and every later search (mixed precision) reads it from here.
    """
    pre = preprocess_for_quantization(reference, out / PREPROCESSED)
    candidates = calibrate(pre, data, spec, progress)
    settings = QdqSettings.from_spec(spec)
    probe = data[:probe_count]
    runner = OrtRunner(reference, "reference", output=output)
    expected = runner.run(probe)
    with tempfile.TemporaryDirectory(prefix="packager-calibrate-") as tmp:
        choice = choose_calibration(
            pre, candidates, settings, probe, expected, Path(tmp), output=runner.output_name
        )
        choice.path.replace(out / INT8)
    save_ranges(choice.ranges, out / RANGES)
    np.save(out / PROBE, probe)
    np.save(out / EXPECTED, expected)
    details: dict[str, object] = {
        "calibration": choice.label,
        "calibration_candidates": {k: round(v, 6) for k, v in choice.scores.items()},
        "calibration_images": len(data),
        "scored_output": runner.output_name,
        "probe_images": len(probe),
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
        return np.load(self.folder / PROBE)

    def expected(self) -> np.ndarray:
        """FP32 outputs on :meth:`probe`, reference mode, of :meth:`scored_output`."""
        return np.load(self.folder / EXPECTED)

    def scored_output(self) -> str:
        """The output every accuracy comparison in static quantization reads (the configured one)."""
        return str(self.details()["scored_output"])
