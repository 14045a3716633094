"""The iOS target end to end on a small real model: what lands in ``ios/``, how it is checked on Linux,
and the config errors a user meets first."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import model_factory
import pytest

from packager.build import BuildOptions
from packager.cli import main
from packager.config import load_config
from packager.errors import ConfigError, VariantsFailed
from packager.pipeline import BuildOutcome, build_project
from packager.plan import make_plan

RESOURCES = "ios/Tiny/Sources/Tiny/Resources/embedder"


def _ios(config: Path, table: str) -> Path:
    config.write_text(config.read_text() + "\n[ios]\n" + table + "\n")
    return config


@pytest.fixture(scope="module")
def ios_build(tmp_path_factory: pytest.TempPathFactory, tiny_project_in) -> BuildOutcome:
    table = (
        '\n[ios]\nmodule = "Tiny"\ncoreml_precisions = ["fp16", "int8-weights"]\n'
        'deployment_target = "iOS16"\n'
    )
    config = tiny_project_in(tmp_path_factory.mktemp("ios"), '["fp16", "int8-qdq"]', table)
    return build_project(load_config(config), BuildOptions())


def _artifacts(outcome: BuildOutcome) -> dict[str, dict]:
    manifest = json.loads((outcome.bundle / "manifest.json").read_text())
    return {a["path"]: a for a in manifest["artifacts"] if a["platform"] == "ios"}


def test_ort_and_core_ml_artifacts_ship_as_package_resources(ios_build: BuildOutcome) -> None:
    assert set(_artifacts(ios_build)) == {
        f"{RESOURCES}/fp32.ort",
        f"{RESOURCES}/fp16.ort",
        f"{RESOURCES}/fp16.mlpackage",
        f"{RESOURCES}/int8-weights.mlpackage",
    }
    assert (ios_build.bundle / "ios.zip").is_file()


def test_the_ort_files_are_validated_with_coreml_ep_coverage_and_options(ios_build: BuildOutcome) -> None:
    ort = _artifacts(ios_build)[f"{RESOURCES}/fp16.ort"]["validation"]
    assert ort["metrics"] and ort["passed"] and ort["not_validated_reason"] is None
    details = ort["details"]
    assert details["ort_format"]["target_platform"] == "arm"
    assert {row["ep"] for row in details["ep_coverage"]} == {"CoreML NeuralNetwork", "CoreML MLProgram"}
    coreml = details["session_config"]["plans"][0]["providers"][0]
    assert coreml["name"] == "CoreML"
    assert coreml["options"]["ModelFormat"] == "MLProgram" and coreml["options"]["MLComputeUnits"] == "ALL"
    assert coreml["options"]["RequireStaticInputShapes"] == "1"
    session = ios_build.bundle / "ios/Tiny/ort/embedder.fp16.ort.session.json"
    assert json.loads(session.read_text()) == details["session_config"]


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS Core ML runs the package itself")
def test_on_linux_the_package_is_measured_on_its_saved_model_and_says_so(ios_build: BuildOutcome) -> None:
    package = _artifacts(ios_build)[f"{RESOURCES}/fp16.mlpackage"]["validation"]
    assert package["not_validated_reason"].startswith("Core ML prediction needs macOS")
    expected = "the FP32 TF SavedModel it was converted from (Core ML's FP16 compute not measured)"
    assert package["validated_on"] == expected
    assert package["metrics"] and package["passed"]
    (embedding,) = package["metrics"]["default"]["outputs"]
    cosine = embedding["cosine"]["mean"]
    assert cosine > 0.9999  # the SavedModel is FP32: only conversion errors would show
    report = (ios_build.bundle / "report.md").read_text()
    assert "the artifact itself was not run" in report and "Core ML prediction needs macOS" in report


def test_the_packages_are_ml_programs_with_the_weights_asked_for(ios_build: BuildOutcome) -> None:
    artifacts = _artifacts(ios_build)
    fp16 = artifacts[f"{RESOURCES}/fp16.mlpackage"]
    int8 = artifacts[f"{RESOURCES}/int8-weights.mlpackage"]
    assert fp16["validation"]["details"]["coreml"]["model_type"] == "mlProgram"
    assert set(fp16["validation"]["details"]["coreml"]["weight_dtypes"]) == {"float16"}
    assert "int8" in int8["validation"]["details"]["coreml"]["weight_dtypes"]
    assert int8["size_bytes"] < fp16["size_bytes"]
    manifest = json.loads((ios_build.bundle / "manifest.json").read_text())
    assert {"coremltools", "onnx2tf", "tensorflow"} <= set(manifest["tool_versions"])
    assert [o["name"] for o in fp16["outputs"]] == ["embedding"]
    assert fp16["inputs"][0]["shape"] == [1, 3, 32, 32]


def test_the_swift_package_is_generated_and_listed(ios_build: BuildOutcome) -> None:
    manifest = json.loads((ios_build.bundle / "manifest.json").read_text())
    sources = {s["path"] for s in manifest["sources"] if s["path"].startswith("ios/")}
    assert {"ios/Tiny/Package.swift", "ios/Tiny/README.md"} <= sources
    assert "ios/Tiny/Sources/Tiny/EmbedderOrt.swift" in sources
    assert "ios/Tiny/Sources/Tiny/EmbedderCoreML.swift" in sources
    package = (ios_build.bundle / "ios/Tiny/Package.swift").read_text()
    assert 'exact: "1.24.2"' in package and '.copy("Resources")' in package


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('module = "face-id"', r"\[ios\]\.module: 'face-id' is not a Swift module name"),
        ('module = "class"', r"'class' is a Swift keyword"),
        ('module = "OnnxRuntimeBindings"', r"a system module or a type every generated package defines"),
        ('module = "Backend"', r"a system module or a type every generated package defines"),
        ('module = "_"', r"'_' is a Swift keyword"),
        ('deployment_target = "iOS14"', r"'iOS14' is too old: Core ML ML Programs .* need iOS 15 or newer"),
        (
            'deployment_target = "ios15"',
            r"'ios15' is not a deployment target packager knows: use one of iOS15",
        ),
        ('runtimes = ["coreml"]\ncoreml_precison = ["fp16"]', r"\[ios\]\.coreml_precison: unknown key"),
        ('ort_eps = ["cpu", "coreml"]', r"\[ios\]\.ort_eps: cpu runs every model, so coreml after it"),
        ('coreml_precisions = ["fp16", "int8-weights"]', r"int8-weights\" needs iOS 16"),
        ('ort_eps = ["nnapi"]', r"\[ios\]\.ort_eps\.0: Input should be 'coreml' or 'cpu'"),
    ],
)
def test_a_bad_ios_table_is_a_config_error_naming_the_field(tiny_project, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_ios(tiny_project(variants='["fp16"]'), table))


def test_an_ort_variant_the_model_does_not_build_is_a_config_error(tiny_project) -> None:
    config = _ios(tiny_project(variants='["fp16"]'), 'ort_variant = "mixed"')
    with pytest.raises(
        ConfigError, match=r"\[ios\]\.ort_variant: model 'embedder' builds no variant 'mixed'"
    ):
        make_plan(load_config(config), BuildOptions())


def test_a_qdq_ort_variant_for_the_coreml_ep_is_warned_about_on_the_terminal(
    tmp_path, tiny_project_in, capsys: pytest.CaptureFixture[str]
) -> None:
    table = '\n[ios]\nmodule = "Tiny"\nruntimes = ["ort"]\nort_variant = "int8-qdq"\n'
    config = tiny_project_in(tmp_path, '["int8-qdq"]', table)
    assert main(["build", str(config)]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "warning: int8-qdq.ort on the CoreML EP (MLProgram):" in printed and "partitions" in printed
    manifest = json.loads((config.parent / "dist" / "tiny-0.1.0" / "manifest.json").read_text())
    ort = next(a for a in manifest["artifacts"] if a["path"] == f"{RESOURCES}/int8-qdq.ort")
    assert any("QDQ INT8 barely runs on Core ML" in w for w in ort["validation"]["details"]["warnings"])
    assert "coremltools" not in manifest["tool_versions"]  # no Core ML step planned
    assert {"onnxruntime", "packager"} <= set(manifest["tool_versions"])


@pytest.fixture
def bicubic_project(tiny_project):  # -> factory
    """The tiny project whose model has a bicubic Resize branch: coremltools 9 cannot convert it."""

    def make(table: str) -> Path:
        config = tiny_project(variants='["fp16"]')
        source = model_factory.mobilefacenet_like(size=32, seed=1, batch="N", opset=11)
        model_factory.save(model_factory.with_bicubic_branch(source), config.parent / "model.onnx")
        return _ios(config, 'module = "Tiny"\n' + table)

    return make


def test_an_op_coremltools_cannot_convert_fails_core_ml_only_and_ort_ships(bicubic_project) -> None:
    outcome = build_project(load_config(bicubic_project('optional_runtimes = ["coreml"]')), BuildOptions())
    model = outcome.result.models[0]
    assert {a.format for a in model.artifacts if a.platform == "ios"} == {"ort"}
    (failed,) = [f for f in model.failed if f.variant.startswith("ios:")]
    assert failed.variant == "ios:fp16.mlpackage" and failed.optional
    assert "ResizeBicubic" in failed.error and "upsample_bicubic" in failed.error
    report = (outcome.bundle / "report.md").read_text()
    assert "ResizeBicubic" in report
    assert (outcome.bundle / RESOURCES / "fp16.ort").is_file()
    assert "EmbedderCoreML" not in {p.name for p in (outcome.bundle / "ios").rglob("*.swift")}


def test_a_required_core_ml_runtime_that_fails_fails_the_build_naming_it(bicubic_project) -> None:
    with pytest.raises(VariantsFailed, match=r"ios:fp16\.mlpackage: .*ResizeBicubic"):
        build_project(load_config(bicubic_project("")), BuildOptions())


def test_the_bundle_s_swift_typechecks_against_the_sdk_stubs(ios_build: BuildOutcome, tmp_path) -> None:
    from swift.toolchain import bundle_accessor, toolchain

    sources = sorted((ios_build.bundle / "ios" / "Tiny" / "Sources").rglob("*.swift"))
    done = toolchain().typecheck([*sources, bundle_accessor(tmp_path)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_packages_made_from_one_saved_model_share_one_measurement(tiny_project) -> None:
    table = 'module = "Tiny"\ncoreml_precisions = ["fp16", "int8-weights"]\ndeployment_target = "iOS16"'
    planned = make_plan(load_config(_ios(tiny_project(variants='["fp16"]'), table)), BuildOptions())
    packages = [p for p in planned.products if p.format == "mlpackage"]
    assert len(packages) == 2
    if sys.platform != "darwin":  # on macOS Core ML measures each package itself
        assert {planned.validations[p.name] for p in packages} == {"validate[ios:embedder:saved_model]"}
