"""Dynamic INT8: weights quantized offline, activations quantized at run time. No calibration data."""

from __future__ import annotations

from packager.quantize.calibration import preprocess_for_quantization, quiet_ort_logging
from packager.quantize.registry import QuantizeContext, register


def _has_conv(path) -> bool:  # Path -> bool
    import onnx

    return any(n.op_type == "Conv" for n in onnx.load(str(path), load_external_data=False).graph.node)


@register("int8-dynamic", needs_calibration=False, summary="INT8 weights, activations quantized at run time")
def quantize_dynamic_int8(ctx: QuantizeContext) -> dict[str, object]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # QInt8 weights on Conv produce ConvInteger(int8), which has no ORT CPU kernel (DESIGN §5.6).
    weight_type = QuantType.QUInt8 if _has_conv(ctx.reference) else QuantType.QInt8
    pre = preprocess_for_quantization(ctx.reference, ctx.work_dir / "preprocessed.onnx")
    with quiet_ort_logging():
        quantize_dynamic(str(pre), str(ctx.output), weight_type=weight_type, per_channel=False)
    return {"tool": "onnxruntime.quantization.quantize_dynamic", "weight_type": weight_type.name}
