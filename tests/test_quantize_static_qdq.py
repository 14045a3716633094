from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import model_factory
import onnx
import pytest
from quantize_helpers import (
    CONV_RELU_NETS,
    MIN_INT8_COSINE,
    calibration_data,
    context,
    float_weight_nodes,
    held_out_data,
    mean_cosine,
    op_counts,
    output_names_in_onnxruntime,
)

from packager.quantize import registry
from packager.quantize.calibrated import Calibrated
from packager.quantize.calibration import build_qdq


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


@pytest.mark.parametrize("build", CONV_RELU_NETS.values(), ids=list(CONV_RELU_NETS))
def test_qdq_folds_relu_and_clip_and_stays_close_to_fp32(
    tmp_path: Path, build: Callable[[], onnx.ModelProto]
) -> None:
    ctx = context(tmp_path, "int8-qdq", build=build)
    registry.get("int8-qdq").run(ctx)
    ops, source_ops = op_counts(ctx.output), op_counts(ctx.reference)
    assert ops["Conv"] == source_ops["Conv"] and ops["Gemm"] == 1
    assert "Relu" not in ops and "Clip" not in ops  # folded into the producers' output QDQ
    assert float_weight_nodes(ctx.output) == set()
    assert output_names_in_onnxruntime(ctx.output) == ["embedding"]
    assert mean_cosine(ctx.reference, ctx.output, held_out_data()) >= MIN_INT8_COSINE


@pytest.mark.parametrize(
    ("build", "conv", "activation"),
    [(model_factory.resnet_like, "conv_6", "Relu"), (model_factory.mobilenet_like, "conv_10", "Clip")],
    ids=["conv-bn-relu", "depthwise-clip6"],
)
def test_excluding_a_conv_followed_by_an_activation_keeps_both_in_float(
    tmp_path: Path, build: Callable[[], onnx.ModelProto], conv: str, activation: str
) -> None:
    ctx = context(tmp_path, "int8-qdq", build=build)
    calibrated = Calibrated(ctx.calibrated)
    path = build_qdq(
        calibrated.preprocessed,
        calibrated.ranges(),
        calibrated.settings(),
        tmp_path / "x.onnx",
        exclude=[conv],
    )
    graph = onnx.load(str(path)).graph
    assert float_weight_nodes(path) == {conv}
    written = {n.name: n.output[0] for n in graph.node}[conv]
    readers = [n.op_type for n in graph.node if written in n.input]
    assert readers == [activation]  # not folded: its input is no longer quantized
    output_names_in_onnxruntime(path)
    assert mean_cosine(ctx.reference, path, held_out_data()) >= MIN_INT8_COSINE
