from __future__ import annotations

from pathlib import Path

import onnx
from quantize_helpers import calibration_data, context, mean_cosine, op_counts

from packager.quantize import registry


def test_qdq_wraps_every_conv_and_gemm_with_per_channel_weights(tmp_path: Path) -> None:
    ctx = context(tmp_path, "int8-qdq")
    details = registry.get("int8-qdq").run(ctx)
    ops = op_counts(ctx.output)
    assert ops["Conv"] == 5 and ops["Gemm"] == 1
    assert ops["DequantizeLinear"] >= 12 and ops["QuantizeLinear"] >= 6
    model = onnx.load(str(ctx.output))
    axes = [
        a.i
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        for a in n.attribute
        if a.name == "axis"
    ]
    assert axes, "per-channel weights carry an axis"
    assert details["calibration"] == "minmax" and details["per_channel"] is True


def test_qdq_stays_close_to_fp32_in_reference_mode(tmp_path: Path) -> None:
    ctx = context(tmp_path, "int8-qdq")
    registry.get("int8-qdq").run(ctx)
    assert mean_cosine(ctx.reference, ctx.output, calibration_data()) > 0.98


def test_percentile_candidates_are_scored_and_the_best_kept(tmp_path: Path) -> None:
    ctx = context(
        tmp_path,
        "int8-qdq",
        calibration={
            "images": str(tmp_path),
            "min_count": 1,
            "method": "percentile",
            "percentile": [99.9, 99.999],
        },
    )
    details = registry.get("int8-qdq").run(ctx)
    scores = details["calibration_candidates"]
    assert set(scores) == {"percentile 99.9", "percentile 99.999"}
    assert details["calibration"] == max(scores, key=scores.get)
