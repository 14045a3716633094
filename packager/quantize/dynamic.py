"""Dynamic INT8: weights quantized offline, activations quantized at run time. No calibration data.

The pre-pass keeps BatchNormalization unfolded (``preprocess_for_quantization(fold=False)``).
Dynamic quantization turns a Conv into ConvInteger with one scale for the whole weight tensor:
ORT's dynamic ConvInteger quantizer takes no ``per_channel`` (the flag changes nothing for Conv).
Folding BatchNorm first multiplies each output channel by its gain ``gamma / sqrt(var + eps)``, so
that one scale must then cover channels of very different ranges. On SFace the gains span
1.97-20.7 on the first Conv and the fold doubles the spread of channel ranges (largest channel
5.2x the median, 2.5x unfolded); the median channel's weight SQNR drops from 37.0 to 31.5 dB, and
the first Conv alone costs 4x the cosine it costs unfolded. Over the network the folded recipe
measured mean cosine 0.99270 on the example's 240 evaluation faces against 0.99314 for ORT's plain
``quantize_dynamic`` (unfolded), at the same speed. Unfolded, the recipe writes what the plain call
writes; the symbolic shape inference of the pre-pass stays.
"""

from __future__ import annotations

from pathlib import Path

from packager.quantize.calibration import preprocess_for_quantization, quiet_ort_logging
from packager.quantize.registry import QuantizeContext


def _has_conv(path: Path) -> bool:
    import onnx

    return any(n.op_type == "Conv" for n in onnx.load(str(path), load_external_data=False).graph.node)


def quantize_dynamic_int8(ctx: QuantizeContext) -> dict[str, object]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # QInt8 weights on Conv produce ConvInteger(int8), which has no ORT CPU kernel (DESIGN §5.6).
    weight_type = QuantType.QUInt8 if _has_conv(ctx.reference) else QuantType.QInt8
    pre = preprocess_for_quantization(ctx.reference, ctx.work_dir / "preprocessed.onnx", fold=False)
    with quiet_ort_logging():
        quantize_dynamic(str(pre), str(ctx.output), weight_type=weight_type, per_channel=False)
    return {
        "tool": "onnxruntime.quantization.quantize_dynamic",
        "weight_type": weight_type.name,
        "per_channel": False,
        "batchnorm_folded": False,
    }
