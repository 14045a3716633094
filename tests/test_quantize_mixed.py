from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import model_factory
import numpy as np
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
from packager.quantize.calibrated import CHECK_EXPECTED, EXPECTED, Calibrated, run_calibration
from packager.quantize.mixed import _schedule
from packager.quantize.registry import QuantizeContext
from packager.validate.metrics import cosine_stats
from packager.validate.runners import OrtRunner

UNREACHABLE = {"target_mean_cosine": 1.0, "max_float_share": 0.5, "max_size_ratio": 1.0}
"""Limits wide enough for the tiny nets (their INT8 is 0.55 of FP32: QDQ scales weigh in)."""


def test_unreachable_target_keeps_most_sensitive_nodes_in_float_within_limits(tmp_path: Path) -> None:
    ctx = context(
        tmp_path, "mixed", mixed={"target_mean_cosine": 1.0, "max_float_share": 0.5, "max_size_ratio": 1.0}
    )
    details = registry.get("mixed").run(ctx)
    floats = details["float_nodes"]
    assert details["target_reached"] is False
    assert details["findings"][0].startswith(
        "target mean cosine 1.0 (+0.001 on held-out calibration images) not reached: best mean cosine 0.9"
    )
    assert 1 <= len(floats) <= 3  # 50% of 6 quantizable nodes
    # Kept in the order of the ranking (gain alone in float, per byte), every one of them gaining.
    assert [n["node"] for n in floats] == details["float_order"][: len(floats)]
    assert all(n["gain_alone_on_tuning"] > 0 for n in floats)
    ranked = {n["node"] for n in details["top_sensitivity"]}
    assert {n["node"] for n in floats} <= ranked
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


def _corrupt(folder: Path, name: str) -> None:
    """Make the FP32 outputs stored for one part disagree with FP32 (cosine about 0.95)."""
    values = np.load(folder / name)
    noise = np.random.default_rng(3).normal(0, 0.3 * float(np.abs(values).mean()), values.shape)
    np.save(folder / name, (values + noise).astype(np.float32))


def _figures(ctx: QuantizeContext) -> tuple[float, float]:
    """Mean cosine of the written model on the tuning (probe) and check images, reference mode."""
    assert ctx.calibrated is not None
    calibrated, runner = Calibrated(ctx.calibrated), OrtRunner(ctx.output, "reference")
    return (
        cosine_stats(calibrated.expected(), runner.run(calibrated.probe())).mean,
        cosine_stats(calibrated.check_expected(), runner.run(calibrated.check())).mean,
    )


def test_both_figures_and_their_image_counts_are_recorded(tmp_path: Path) -> None:
    ctx = context(tmp_path, "mixed", mixed=UNREACHABLE)
    details = registry.get("mixed").run(ctx)
    tuning, check = _figures(ctx)
    assert details["reached_mean_cosine_on_tuning"] == round(tuning, 6)
    assert details["reached_mean_cosine_on_check"] == round(check, 6)
    assert (details["tuning_images_scored"], details["tuning_images"], details["check_images"]) == (12, 12, 4)
    assert details["stopped_on"] == "check images" and details["check_margin"] == 0.001
    assert all(t["mean_cosine_tuning"] and t["mean_cosine_check"] for t in details["search"])
    assert len(details["search"]) >= 2 and details["search"][0]["float_nodes"] == 0


def test_search_stops_on_the_check_figure_not_the_tuning_one(tmp_path: Path) -> None:
    # The tuning images are fine at every node in INT8, the check images (made to disagree) are not:
    # a search stopping on the tuning figure would stop at once; this one goes on to its limits.
    ctx = context(tmp_path, "mixed", mixed={**UNREACHABLE, "target_mean_cosine": 0.99})
    assert ctx.calibrated is not None
    _corrupt(ctx.calibrated, CHECK_EXPECTED)
    details = registry.get("mixed").run(ctx)
    assert details["search"][0]["mean_cosine_tuning"] >= 0.991 > details["search"][0]["mean_cosine_check"]
    assert details["target_reached"] is False and len(details["search"]) > 1
    assert details["stop_reason"].startswith("limits reached")


def test_search_stops_as_soon_as_the_check_figure_reaches_the_bar(tmp_path: Path) -> None:
    # The other way round: the tuning figure is far below the target, the check figure above it.
    ctx = context(tmp_path, "mixed", mixed={"target_mean_cosine": 0.99})
    assert ctx.calibrated is not None
    _corrupt(ctx.calibrated, EXPECTED)
    details = registry.get("mixed").run(ctx)
    assert details["reached_mean_cosine_on_tuning"] < 0.99 <= details["reached_mean_cosine_on_check"]
    assert details["target_reached"] is True and details["float_nodes"] == []
    assert details["stop_reason"] == "target reached with every node in INT8"


def test_margin_raises_the_bar_on_the_check_images(tmp_path: Path) -> None:
    ctx = context(tmp_path, "mixed", mixed={"target_mean_cosine": 0.5})
    assert ctx.calibrated is not None
    int8_check = Calibrated(ctx.calibrated).details()["calibration_check_mean_cosine"]
    target = {**UNREACHABLE, "target_mean_cosine": int8_check - 1e-5}
    plain = registry.get("mixed").run(
        dataclasses.replace(ctx, spec=_with_mixed(ctx, {**target, "check_margin": 0}))
    )
    assert plain["target_reached"] is True and len(plain["search"]) == 1
    margin = registry.get("mixed").run(dataclasses.replace(ctx, spec=_with_mixed(ctx, target)))
    assert len(margin["search"]) > 1  # INT8 alone is below target + margin: the search went on


def _with_mixed(ctx: QuantizeContext, mixed: dict[str, object]):  # -> ModelSpec
    return ctx.spec.model_copy(update={"mixed": ctx.spec.mixed.model_copy(update=mixed)})


def test_check_images_change_no_choice_of_the_search(tmp_path: Path) -> None:
    # Short of the bar, the ranking, the order of growth and the model kept are the tuning part's.
    ctx = context(tmp_path, "mixed", mixed=UNREACHABLE)
    intact = registry.get("mixed").run(ctx)
    kept = ctx.output.read_bytes()
    assert ctx.calibrated is not None
    _corrupt(ctx.calibrated, CHECK_EXPECTED)
    corrupted = registry.get("mixed").run(ctx)
    assert corrupted["float_order"] == intact["float_order"] and intact["float_order"]
    assert corrupted["float_nodes"] == intact["float_nodes"]
    assert corrupted["reached_mean_cosine_on_check"] < intact["reached_mean_cosine_on_check"]
    assert ctx.output.read_bytes() == kept


def test_without_check_images_the_tuning_figure_decides_and_says_so(tmp_path: Path) -> None:
    ctx = context(tmp_path, "mixed", mixed={"target_mean_cosine": 0.99})
    assert ctx.spec.calibration is not None and ctx.calibrated is not None
    folder = tmp_path / "no-check"
    folder.mkdir()
    data = Calibrated(ctx.calibrated).probe()[:3]  # fewer images than the split needs for one check image
    run_calibration(ctx.reference, data, ctx.spec.calibration, 16, folder)
    details = registry.get("mixed").run(dataclasses.replace(ctx, calibrated=folder))
    assert details["check_images"] == 0 and details["reached_mean_cosine_on_check"] is None
    assert details["stopped_on"].startswith("tuning images (fewer than 4 calibration images")
    assert details["target_reached"] is True and details["reached_mean_cosine_on_tuning"] >= 0.991
