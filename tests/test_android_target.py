"""The Android target end to end on a small real model: what lands in ``android/`` and how it is
checked, plus the config errors a user meets first."""

from __future__ import annotations

import json
from pathlib import Path

import model_factory
import pytest

from packager.build import BuildOptions
from packager.config import load_config
from packager.errors import ConfigError, StepError, VariantsFailed
from packager.pipeline import BuildOutcome, build_project
from packager.plan import make_plan
from packager.steps import StepContext
from packager.target import ArtifactRecords
from targets.android.config import AndroidSpec
from targets.android.steps import tflite_speed_step

MODULE = "android/tiny/src/main"


def _android(config: Path, table: str) -> Path:
    config.write_text(config.read_text() + "\n" + table + "\n")
    return config


@pytest.fixture(scope="module")
def float_build(tmp_path_factory: pytest.TempPathFactory, tiny_project_in) -> BuildOutcome:
    table = (
        '\n[android]\npackage = "com.example.tiny"\nmodule = "tiny"\ntflite_precisions = ["fp32", "fp16"]\n'
    )
    config = tiny_project_in(tmp_path_factory.mktemp("android"), '["fp16", "int8-qdq"]', table)
    return build_project(load_config(config), BuildOptions())


def test_ort_and_tflite_artifacts_ship_in_the_module_assets_validated(float_build: BuildOutcome) -> None:
    manifest = json.loads((float_build.bundle / "manifest.json").read_text())
    android = {a["path"]: a for a in manifest["artifacts"] if a["platform"] == "android"}
    assert set(android) == {
        f"{MODULE}/assets/embedder/fp32.ort",
        f"{MODULE}/assets/embedder/int8-qdq.ort",
        f"{MODULE}/assets/embedder/fp32.tflite",
        f"{MODULE}/assets/embedder/fp16.tflite",
    }
    for artifact in android.values():
        assert artifact["validation"]["metrics"] and artifact["validation"]["passed"], artifact["path"]
    ort = android[f"{MODULE}/assets/embedder/int8-qdq.ort"]["validation"]["details"]
    assert ort["ort_format"]["target_platform"] == "arm"
    assert {row["ep"] for row in ort["ep_coverage"]} >= {"NNAPI", "XNNPACK"}


def test_the_module_has_loaders_gradle_and_session_configs_listed_in_the_manifest(
    float_build: BuildOutcome,
) -> None:
    manifest = json.loads((float_build.bundle / "manifest.json").read_text())
    sources = {s["path"] for s in manifest["sources"]}
    assert "android/tiny/build.gradle.kts" in sources
    assert "android/tiny/ort/embedder.int8-qdq.ort.session.json" in sources
    assert "android/tiny/ort/required_operators.config" in sources
    assert any(p.endswith(".kt") for p in sources)
    assert (float_build.bundle / "android.zip").is_file()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('package = "Com.Example"', r"\[android\]\.package: 'Com.Example' is not a Java/Kotlin package name"),
        ('package = "com.example.fun"', r"package segment 'fun' is a Kotlin keyword"),
        (
            'package = "com.example"\nruntimes = ["ort", "ort"]',
            r"\[android\]\.runtimes: .*'ort' is listed twice",
        ),
        (
            'package = "com.example"\ntflite_precison = ["fp32"]',
            r"\[android\]\.tflite_precison: unknown key \(check spelling; the \[android\] keys are listed in "
            r"README 'android'\)",
        ),
        ('package = "com.example"\noptional_runtimes = ["tflite"]\nruntimes = ["ort"]', r"not in runtimes"),
        ('package = "com.example"\nort_eps = ["cpu", "xnnpack"]', r"xnnpack after it would never be tried"),
    ],
)
def test_a_bad_android_table_is_a_config_error_naming_the_field(
    tiny_project, table: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_android(tiny_project(variants='["fp16"]'), "[android]\n" + table))


def test_int8_tflite_without_calibration_images_is_a_config_error(tiny_project) -> None:
    config = tiny_project(variants='["fp16"]')
    text = "\n".join(line for line in config.read_text().splitlines() if not line.startswith("calibration"))
    table = '[android]\npackage = "com.example.tiny"\ntflite_precisions = ["fp32", "int8"]'
    config.write_text(f"{text}\n{table}\n")
    with pytest.raises(ConfigError, match=r"int8 needs calibration images and model 'embedder' has none"):
        make_plan(load_config(config), BuildOptions())


def test_an_ort_variant_the_model_does_not_build_is_a_config_error(tiny_project) -> None:
    config = _android(
        tiny_project(variants='["fp16"]'), '[android]\npackage = "com.example"\nort_variant = "mixed"'
    )
    with pytest.raises(ConfigError, match=r"model 'embedder' builds no variant 'mixed'"):
        make_plan(load_config(config), BuildOptions())


@pytest.fixture
def det_project(tiny_project):  # -> factory
    """The tiny project whose model has a Det branch: onnxruntime runs it, onnx2tf cannot convert it."""

    def make(table: str) -> Path:
        config = tiny_project(variants='["fp16", "int8-qdq"]')
        source = model_factory.mobilefacenet_like(size=32, seed=1, batch="N", opset=11)
        model_factory.save(model_factory.with_det_branch(source), config.parent / "model.onnx")
        return _android(config, '[android]\npackage = "com.example.tiny"\n' + table)

    return make


def test_an_op_onnx2tf_cannot_convert_fails_tflite_only_and_the_ort_module_ships(det_project) -> None:
    outcome = build_project(load_config(det_project('optional_runtimes = ["tflite"]')), BuildOptions())
    model = outcome.result.models[0]
    assert {a.format for a in model.artifacts} == {"ort"}
    failed = {f.variant: f for f in model.failed}
    assert set(failed) == {"android:fp32.tflite", "android:fp16.tflite", "android:int8.tflite"}
    assert all(f.optional and "ONNX op Det" in f.error and "node 'det'" in f.error for f in failed.values())
    report = (outcome.bundle / "report.md").read_text()
    assert "saved-model[embedder]" in report and "ONNX op Det" in report
    assert (
        outcome.bundle / "android" / "tiny" / "src" / "main" / "assets" / "embedder" / "fp32.ort"
    ).is_file()


def test_a_required_runtime_that_fails_to_convert_fails_the_build_naming_it(det_project) -> None:
    with pytest.raises(VariantsFailed, match=r"android:fp32\.tflite: .*ONNX op Det") as err:
        build_project(load_config(det_project("")), BuildOptions())
    assert not err.value.result.passed


@pytest.fixture(scope="module")
def slow_and_fast(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two real .tflite files, one with ~16x the work of the other (input 128x128 vs 32x32)."""
    from targets.android.tflite import convert_float

    root = tmp_path_factory.mktemp("speed")
    files = []
    for size in (128, 32):
        onnx_path = model_factory.save(
            model_factory.mobilefacenet_like(size=size, seed=1), root / f"m{size}.onnx"
        )
        files.append(convert_float(onnx_path.resolve(), (root / f"t{size}").resolve()).float32)
    return files[0], files[1]


def _speed_context(tmp_path: Path, int8: Path, fp32: Path) -> StepContext:
    return StepContext(tmp_path, {"int8": int8, "fp32": fp32}, {}, lambda *_: None)


def test_an_int8_tflite_slower_than_float_fails_the_build_by_default(slow_and_fast, tmp_path: Path) -> None:
    slow, fast = slow_and_fast
    table = AndroidSpec(package="com.example.tiny", threads=1)
    with pytest.raises(StepError, match=r"int8\.tflite fails the XNNPACK check on this host: INT8 p50 .* is"):
        tflite_speed_step(table, _speed_context(tmp_path, slow, fast))


def test_with_slower_int8_reject_it_is_measured_and_not_shipped(slow_and_fast, tmp_path: Path) -> None:
    slow, fast = slow_and_fast
    table = AndroidSpec(package="com.example.tiny", threads=1, slower_int8="reject")
    record = ArtifactRecords.model_validate(tflite_speed_step(table, _speed_context(tmp_path, slow, fast)))
    int8 = record.artifacts["int8.tflite"]
    assert int8.rejected is not None and "x FP32's" in int8.rejected
    speed = int8.details["host_speed"]
    assert isinstance(speed, dict) and speed["ratio"] > 1.0
    xnnpack = int8.details["xnnpack"]
    assert isinstance(xnnpack, dict) and xnnpack["partitions"] >= 1


def test_a_faster_int8_in_one_partition_ships(slow_and_fast, tmp_path: Path) -> None:
    slow, fast = slow_and_fast
    table = AndroidSpec(package="com.example.tiny", threads=1, max_partitions=50)
    record = ArtifactRecords.model_validate(tflite_speed_step(table, _speed_context(tmp_path, fast, slow)))
    assert record.artifacts["int8.tflite"].rejected is None


def test_dynamic_range_tflite_and_nnapi_flags_reach_the_module(tmp_path: Path, tiny_project_in) -> None:
    table = (
        '\n[android]\npackage = "com.example.tiny"\nmodule = "tiny"\n'
        'tflite_precisions = ["fp32", "int8-dynamic"]\n'
        'ort_eps = ["nnapi", "cpu"]\nnnapi_flags = ["USE_FP16"]\n'
    )
    outcome = build_project(load_config(tiny_project_in(tmp_path, '["int8-qdq"]', table)), BuildOptions())
    manifest = json.loads((outcome.bundle / "manifest.json").read_text())
    android = {a["path"]: a for a in manifest["artifacts"] if a["platform"] == "android"}
    dynamic = android[f"{MODULE}/assets/embedder/int8-dynamic.tflite"]
    assert (
        dynamic["validation"]["passed"]
        and dynamic["size_bytes"] < android[f"{MODULE}/assets/embedder/fp32.tflite"]["size_bytes"]
    )
    assert [o["name"] for o in dynamic["outputs"]] == ["embedding"]
    session = json.loads((outcome.bundle / "android/tiny/ort/embedder.int8-qdq.ort.session.json").read_text())
    assert session["plans"][0]["providers"] == [{"name": "NNAPI", "options": {}, "flags": ["USE_FP16"]}]
    loader = (outcome.bundle / "android/tiny/src/main/kotlin/com/example/tiny/EmbedderOrt.kt").read_text()
    assert "NNAPIFlags.USE_FP16" in loader
    tflite = (outcome.bundle / "android/tiny/src/main/kotlin/com/example/tiny/EmbedderTflite.kt").read_text()
    assert tflite.index("embedder/int8-dynamic.tflite") < tflite.index("embedder/fp32.tflite")


def test_nnapi_flags_without_nnapi_are_a_config_error(tiny_project) -> None:
    table = '[android]\npackage = "com.example"\nnnapi_flags = ["USE_FP16"]'
    with pytest.raises(ConfigError, match=r"nnapi_flags are given but nnapi is not in ort_eps"):
        load_config(_android(tiny_project(variants='["fp16"]'), table))
