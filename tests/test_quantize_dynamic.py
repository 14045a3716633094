from __future__ import annotations

from pathlib import Path

from quantize_helpers import calibration_data, context, mean_cosine, op_counts

from packager.quantize import registry


def test_dynamic_int8_uses_uint8_weights_for_conv_models_and_runs(tmp_path: Path) -> None:
    ctx = context(tmp_path, "int8-dynamic")
    details = registry.get("int8-dynamic").run(ctx)
    assert details["weight_type"] == "QUInt8"
    ops = op_counts(ctx.output)
    assert ops.get("ConvInteger", 0) == 5
    assert mean_cosine(ctx.reference, ctx.output, calibration_data()[:4]) > 0.98
