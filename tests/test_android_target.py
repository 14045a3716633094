"""The Android target end to end on a small real model: what lands in ``android/`` and how it is
checked, plus the config errors a user meets first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from packager.build import BuildOptions
from packager.config import load_config
from packager.errors import ConfigError
from packager.pipeline import BuildOutcome, build_project
from packager.plan import make_plan

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
        ('package = "Com.Example"', r"\[android\]\.package: .*not a Java/Kotlin package name"),
        ('package = "com.example.fun"', r"package segment 'fun' is a Kotlin keyword"),
        (
            'package = "com.example"\nruntimes = ["ort", "ort"]',
            r"\[android\]\.runtimes: .*'ort' is listed twice",
        ),
        (
            'package = "com.example"\ntflite_precison = ["fp32"]',
            r"\[android\]\.tflite_precison: Extra inputs",
        ),
        ('package = "com.example"\noptional_runtimes = ["tflite"]\nruntimes = ["ort"]', r"not in runtimes"),
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
