from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import model_factory
import onnx
import pytest
from quantize_helpers import (
    CONV_RELU_NETS,
    MIN_INT8_COSINE,
    context,
    float_weight_nodes,
    held_out_data,
    mean_cosine,
    node_names,
    op_counts,
    output_names_in_onnxruntime,
)

from packager.quantize import registry
from packager.quantize.mixed import _schedule

UNREACHABLE = {"target_mean_cosine": 1.0, "max_float_share": 0.5, "max_size_ratio": 1.0}


def test_unreachable_target_keeps_most_sensitive_nodes_in_float_within_limits(tmp_path: Path) -> None:
    ctx = context(
        tmp_path, "mixed", mixed={"target_mean_cosine": 1.0, "max_float_share": 0.5, "max_size_ratio": 1.0}
    )
    details = registry.get("mixed").run(ctx)
    floats = details["float_nodes"]
    assert details["target_reached"] is False
    assert details["findings"][0].startswith("target mean cosine 1.0 not reached: best 0.9")
    assert 1 <= len(floats) <= 3  # 50% of 6 quantizable nodes
    ranked = [n["node"] for n in details["top_sensitivity"]]
    assert floats[0]["node"] == ranked[0]
    assert op_counts(ctx.output)["Conv"] == 5


def test_reachable_target_stops_with_no_float_nodes(tmp_path: Path) -> None:
    ctx = context(tmp_path, "mixed", mixed={"target_mean_cosine": 0.5})
    details = registry.get("mixed").run(ctx)
    assert details["target_reached"] is True and details["float_nodes"] == []
    assert details["findings"] == []


def test_size_budget_excludes_nodes_that_would_break_it(tmp_path: Path) -> None:
    ctx = context(
        tmp_path, "mixed", mixed={"target_mean_cosine": 1.0, "max_float_share": 1.0, "max_size_ratio": 0.01}
    )
    details = registry.get("mixed").run(ctx)
    assert details["float_nodes"] == []


def test_schedule_tries_single_nodes_first_then_grows() -> None:
    assert _schedule(20) == [1, 2, 3, 4, 6, 10, 18, 20]


@pytest.mark.parametrize("build", CONV_RELU_NETS.values(), ids=list(CONV_RELU_NETS))
def test_mixed_builds_on_conv_relu_nets_and_stays_close_to_fp32(
    tmp_path: Path, build: Callable[[], onnx.ModelProto]
) -> None:
    ctx = context(tmp_path, "mixed", build=build)
    registry.get("mixed").run(ctx)
    assert output_names_in_onnxruntime(ctx.output) == ["embedding"]
    assert mean_cosine(ctx.reference, ctx.output, held_out_data()) >= MIN_INT8_COSINE


@pytest.mark.parametrize("build", CONV_RELU_NETS.values(), ids=list(CONV_RELU_NETS))
def test_unreachable_target_keeps_real_fp32_nodes_unquantized(
    tmp_path: Path, build: Callable[[], onnx.ModelProto]
) -> None:
    ctx = context(tmp_path, "mixed", build=build, mixed=UNREACHABLE)
    details = registry.get("mixed").run(ctx)
    floats = [n["node"] for n in details["float_nodes"]]
    assert details["target_reached"] is False and floats
    assert set(floats) <= node_names(ctx.reference)
    assert set(floats) <= float_weight_nodes(ctx.output)
    assert not set(floats) & set(details["folded_activations"])
    output_names_in_onnxruntime(ctx.output)
    assert mean_cosine(ctx.reference, ctx.output, held_out_data()) >= MIN_INT8_COSINE


def test_folded_activations_are_reported_and_never_kept_in_float_alone(tmp_path: Path) -> None:
    ctx = context(
        tmp_path, "mixed", build=model_factory.mobilenet_like, mixed={**UNREACHABLE, "max_float_share": 1.0}
    )
    details = registry.get("mixed").run(ctx)
    assert details["folded_activations"]["relu_7"] == "conv_6"
    ranked = {n["node"] for n in details["top_sensitivity"]} | {n["node"] for n in details["float_nodes"]}
    assert not ranked & {"relu_7", "clip_13"}


@pytest.mark.parametrize(
    "build",
    [
        lambda: model_factory.resnet_like(two_heads=True),
        lambda: model_factory.mobilefacenet_like(seed=4, two_heads=True),
    ],
    ids=["resnet_like", "mobilefacenet_like"],
)
def test_only_nodes_feeding_the_scored_output_are_ranked(
    tmp_path: Path, build: Callable[[], onnx.ModelProto]
) -> None:
    # "logits" is listed first: the configured "embedding" is what the search scores and ranks for.
    ctx = context(
        tmp_path,
        "mixed",
        build=build,
        output={"name": "embedding"},
        mixed={**UNREACHABLE, "max_float_share": 1.0},
    )
    details = registry.get("mixed").run(ctx)
    ranked = {n["node"] for n in details["top_sensitivity"]}
    assert "fc" in ranked and "aux_fc" not in ranked
    assert "aux_fc" not in {n["node"] for n in details["float_nodes"]}
    assert set(output_names_in_onnxruntime(ctx.output)) == {"logits", "embedding"}
