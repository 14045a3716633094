"""A variant that cannot be built fails that variant, not the build: the others are built and
measured, every failure is listed with the tool and cause, and nothing is left in the output folder."""

from __future__ import annotations

import dataclasses
import json

import pytest

from packager.build import BuildOptions
from packager.config import load_config
from packager.errors import ConversionError, VariantsFailed
from packager.pipeline import build_project
from packager.quantize import registry
from packager.quantize import step as quantize_step
from packager.scheduler import Observer
from packager.steps import Step, StepFailure


@pytest.fixture
def broken_dynamic(monkeypatch: pytest.MonkeyPatch) -> None:
    """int8-dynamic's converter fails the way a real tool does on some valid models."""

    def fail(ctx: registry.QuantizeContext) -> dict[str, object]:
        raise ConversionError(
            f"quantize[{ctx.spec.name}:int8-dynamic]",
            "onnxruntime.quantization.quantize_dynamic",
            "MatMulInteger has no kernel for this input type",
            "use int8-qdq for this model",
            node="fc",
        )

    recipe = registry.get("int8-dynamic")
    monkeypatch.setitem(registry._RECIPES, "int8-dynamic", dataclasses.replace(recipe, run=fail))


def test_a_failed_required_variant_fails_the_build_after_building_the_others(
    tiny_project, broken_dynamic: None
) -> None:
    config = load_config(tiny_project(variants='["fp16", "int8-dynamic"]'))
    with pytest.raises(VariantsFailed) as err:
        build_project(config, BuildOptions())
    message = str(err.value)
    assert "embedder:int8-dynamic" in message and "quantize_dynamic failed at node 'fc'" in message
    assert ".packager-cache" not in message.split("(report:")[0]
    result = err.value.result
    model = result.models[0]
    assert [v.variant for v in model.variants] == ["fp16"] and model.variants[0].passed
    assert [(f.variant, f.step, f.optional) for f in model.failed] == [
        ("int8-dynamic", "quantize[embedder:int8-dynamic]", False)
    ]
    assert err.value.exit_code == 1
    assert not config.build.out.exists()
    assert "int8-dynamic" in err.value.report.read_text()


def test_an_optional_variant_that_fails_is_reported_and_left_out_of_the_bundle(
    tiny_project, broken_dynamic: None
) -> None:
    path = tiny_project(variants='["fp16", "int8-dynamic"]')
    path.write_text(
        path.read_text().replace(
            'variants = ["fp16"', 'optional_variants = ["int8-dynamic"]\nvariants = ["fp16"'
        )
    )
    outcome = build_project(load_config(path), BuildOptions())
    manifest = json.loads((outcome.bundle / "manifest.json").read_text())
    assert manifest["passed"] is True
    assert {a["variant"] for a in manifest["artifacts"]} == {"fp32", "fp16"}
    failed = manifest["models"][0]["failed_variants"]
    assert [(f["variant"], f["optional"]) for f in failed] == [("int8-dynamic", True)]
    assert "MatMulInteger" in (outcome.bundle / "report.md").read_text()


def test_a_failed_shared_calibration_fails_every_static_variant_and_nothing_else(
    tiny_project, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> dict[str, object]:
        raise ConversionError(
            "calibrate[embedder]", "onnxruntime.quantization", "calibrator crashed", "retry"
        )

    monkeypatch.setattr(quantize_step, "run_calibration", fail)
    config = load_config(tiny_project())
    with pytest.raises(VariantsFailed) as err:
        build_project(config, BuildOptions())
    model = err.value.result.models[0]
    assert [v.variant for v in model.variants] == ["fp16", "int8-dynamic"]
    assert {(f.variant, f.step) for f in model.failed} == {
        ("int8-qdq", "calibrate[embedder]"),
        ("mixed", "calibrate[embedder]"),
    }


def test_the_step_log_says_which_steps_failed_and_which_were_skipped(
    tiny_project, broken_dynamic: None
) -> None:
    seen: dict[str, str] = {}

    def finished(step: Step, outcome: object) -> None:
        if isinstance(outcome, StepFailure):
            seen[step.name] = "skipped" if outcome.skipped else "failed"

    config = load_config(tiny_project(variants='["int8-dynamic"]'))
    with pytest.raises(VariantsFailed):
        build_project(config, BuildOptions(), observer=Observer(finished=finished))
    assert seen == {
        "quantize[embedder:int8-dynamic]": "failed",
        "validate[embedder:int8-dynamic]": "skipped",
    }
