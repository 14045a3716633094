from __future__ import annotations

from pathlib import Path

import onnx
from quantize_helpers import calibration_data, context, mean_cosine

from packager.quantize import registry


def test_fp16_halves_weights_keeps_float32_io_and_matches(tmp_path: Path) -> None:
    ctx = context(tmp_path, "fp16")
    details = registry.get("fp16").run(ctx)
    model = onnx.load(str(ctx.output))
    weights = [t for t in model.graph.initializer if len(t.dims) == 4]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 and t.raw_data for t in weights)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert ctx.output.stat().st_size < 0.56 * ctx.reference.stat().st_size
    assert details["keep_io_types"] is True
    assert mean_cosine(ctx.reference, ctx.output, calibration_data()[:4]) > 0.9999
