"""Shared static-quantization machinery: calibrate once, then build QDQ models from the ranges.

ORT's ``quantize_static`` recalibrates on every call; the mixed-precision search builds many
models from one calibration, so the two halves are split here (same ORT classes underneath).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from packager.config import CalibrationSpec

log = logging.getLogger(__name__)


class ArrayReader:
    """ORT CalibrationDataReader over preprocessed tensors, one sample per call (batch is fixed to 1)."""

    def __init__(self, input_name: str, data: np.ndarray) -> None:
        self.input_name = input_name
        self.data = data
        self.index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.data):
            return None
        sample = self.data[self.index][None].astype(np.float32)
        self.index += 1
        return {self.input_name: sample}

    def __len__(self) -> int:
        return len(self.data)

    def rewind(self) -> None:
        self.index = 0


@dataclass(frozen=True)
class QdqSettings:
    per_channel: bool
    reduce_range: bool
    activation_type: str = "uint8"
    weight_type: str = "int8"

    @classmethod
    def from_spec(cls, spec: CalibrationSpec) -> QdqSettings:
        return cls(per_channel=spec.per_channel, reduce_range=spec.reduce_range)


def preprocess_for_quantization(reference: Path, output: Path) -> Path:
    """ORT's recommended pre-pass (BN folding, symbolic shapes); measured to help on SFace (DESIGN §5.13)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(reference), str(output), skip_symbolic_shape=False)
    return output


def calibrate(model: Path, data: np.ndarray, spec: CalibrationSpec):  # -> TensorsData
    """Run the calibrator over the data and return per-tensor ranges."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    import onnx

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[spec.method]
    extra: dict[str, object] = {}
    if spec.method == "percentile":
        extra["percentile"] = spec.percentile
    input_name = onnx.load(str(model), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="packager-calib-") as tmp:
        calibrator = create_calibrator(
            model,
            [],
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=method,
            extra_options=extra,
            providers=["CPUExecutionProvider"],
        )
        calibrator.collect_data(ArrayReader(input_name, data))
        ranges = calibrator.compute_data()
        del calibrator
    return ranges


def quantizable_nodes(model: Path) -> list[str]:
    """Names of nodes the QDQ quantizer would touch (its own op registry)."""
    import onnx
    from onnxruntime.quantization.registry import QDQRegistry

    graph = onnx.load(str(model), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in QDQRegistry]


def build_qdq(model: Path, ranges, settings: QdqSettings, output: Path, exclude: list[str] | None = None) -> Path:
    """QDQ-quantize ``model`` with precomputed ranges, keeping ``exclude`` nodes in float."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    qtypes = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    loaded = load_model_with_shape_infer(model)
    quantizer = QDQQuantizer(
        loaded,
        settings.per_channel,
        settings.reduce_range,
        qtypes[settings.weight_type],
        qtypes[settings.activation_type],
        ranges,
        [],
        list(exclude or []),
        sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),
        {},
    )
    quantizer.quantize_model()
    quantizer.model.save_model_to_file(str(output), False)
    return output
