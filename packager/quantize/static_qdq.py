"""Static INT8 in QDQ format, calibrated on real images: the format NNAPI/XNNPACK/CoreML EPs consume."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from packager.config import ModelSpec
from packager.errors import StepError
from packager.quantize.calibration import (
    CalibrationChoice,
    QdqSettings,
    calibrate,
    choose_calibration,
    preprocess_for_quantization,
)
from packager.quantize.registry import QuantizeContext, register
from packager.validate.runners import OrtRunner


def calibration_params(spec: ModelSpec) -> dict[str, object]:
    assert spec.calibration is not None
    return {
        **spec.calibration.model_dump(mode="json", exclude={"images", "min_count"}),
        "probe_images": spec.mixed.probe_images,
    }


@dataclass(frozen=True)
class CalibratedBase:
    """A calibrated, fully INT8 QDQ model plus what recipes building on it need to measure themselves."""

    choice: CalibrationChoice
    settings: QdqSettings
    preprocessed: Path
    probe: np.ndarray
    expected: np.ndarray
    """FP32 outputs on ``probe`` in the reference mode."""


def calibrated_qdq(ctx: QuantizeContext, label: str) -> CalibratedBase:
    """Pre-process, calibrate once, and keep the best candidate range setting (all nodes INT8)."""
    spec = ctx.spec.calibration
    if spec is None or ctx.calibration is None or ctx.probe is None:
        raise StepError(f"quantize[{label}]", "no calibration data", "add [models.calibration] images")
    pre = preprocess_for_quantization(ctx.reference, ctx.work_dir / "preprocessed.onnx")
    candidates = calibrate(pre, ctx.calibration, spec, ctx.report(f"calibrating {label}"))
    settings = QdqSettings.from_spec(spec)
    probe = ctx.probe[: ctx.spec.mixed.probe_images]
    expected = OrtRunner(ctx.reference, "reference").run(probe)
    choice = choose_calibration(pre, candidates, settings, probe, expected, ctx.work_dir)
    return CalibratedBase(choice, settings, pre, probe, expected)


def calibration_details(choice: CalibrationChoice, settings: QdqSettings, images: int) -> dict[str, object]:
    return {
        "calibration": choice.label,
        "calibration_candidates": {k: round(v, 6) for k, v in choice.scores.items()},
        "calibration_images": images,
        "per_channel": settings.per_channel,
        "reduce_range": settings.reduce_range,
        "activation_type": settings.activation_type,
        "weight_type": settings.weight_type,
    }


@register(
    "int8-qdq",
    needs_calibration=True,
    summary="static INT8 (QDQ), calibrated on real images",
    params=calibration_params,
)
def quantize_static_qdq(ctx: QuantizeContext) -> dict[str, object]:
    base = calibrated_qdq(ctx, "int8-qdq")
    base.choice.path.replace(ctx.output)
    assert ctx.calibration is not None
    return {
        "tool": "onnxruntime.quantization (QDQQuantizer)",
        **calibration_details(base.choice, base.settings, len(ctx.calibration)),
    }
