"""Static INT8 in QDQ format, calibrated on real images: the format NNAPI/XNNPACK/CoreML EPs consume."""

from __future__ import annotations

from packager.config import ModelSpec
from packager.errors import StepError
from packager.quantize.calibration import QdqSettings, build_qdq, calibrate, preprocess_for_quantization
from packager.quantize.registry import QuantizeContext, register


def calibration_params(spec: ModelSpec) -> dict[str, object]:
    assert spec.calibration is not None
    return spec.calibration.model_dump(mode="json", exclude={"images", "min_count"})


@register(
    "int8-qdq",
    needs_calibration=True,
    summary="static INT8 (QDQ), calibrated on real images",
    params=calibration_params,
)
def quantize_static_qdq(ctx: QuantizeContext) -> dict[str, object]:
    spec = ctx.spec.calibration
    if spec is None or ctx.calibration is None:
        raise StepError("quantize[int8-qdq]", "no calibration data", "add [models.calibration] images")
    pre = preprocess_for_quantization(ctx.reference, ctx.work_dir / "preprocessed.onnx")
    ranges = calibrate(pre, ctx.calibration, spec)
    settings = QdqSettings.from_spec(spec)
    build_qdq(pre, ranges, settings, ctx.output)
    return {
        "tool": "onnxruntime.quantization (QDQQuantizer)",
        "calibration_method": spec.method,
        "calibration_images": len(ctx.calibration),
        "per_channel": settings.per_channel,
        "reduce_range": settings.reduce_range,
        "activation_type": settings.activation_type,
        "weight_type": settings.weight_type,
    }
