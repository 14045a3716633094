"""manifest.json is one typed contract: packager writes it, device_bench reads it with the same model."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from device_bench.bundle import select_artifacts
from device_bench.errors import BundleError
from packager.build import BuildOptions
from packager.bundle import manifest
from packager.cli import main
from packager.config import load_config
from packager.manifest import SCHEMA_VERSION, Manifest
from packager.pipeline import BuildOutcome, build_project
from packager.results import VariantResult

TFLITE = "android/models/embedder/fp16.tflite"


@pytest.fixture
def built(tiny_project) -> BuildOutcome:
    return build_project(load_config(tiny_project(variants='["fp16", "int8-dynamic"]')), BuildOptions())


def _results(outcome: BuildOutcome) -> dict[str, VariantResult]:
    return {v.file: v for m in outcome.result.models for v in [m.reference, *m.variants, *m.artifacts]}


def test_device_bench_reads_every_artifact_packager_wrote(built: BuildOutcome) -> None:
    text = (built.bundle / "manifest.json").read_text()
    written = Manifest.model_validate_json(text)
    assert written.schema_version == SCHEMA_VERSION == 7
    assert written.to_json() == text  # the writer is deterministic: sorted keys, same floats

    results = _results(built)
    selection = select_artifacts(built.bundle, {a.format for a in written.artifacts})
    assert (
        sorted(a.ref.path for a in selection.artifacts)
        == sorted(results)
        == [
            "models/embedder/fp16.onnx",
            "models/embedder/fp32.onnx",
            "models/embedder/int8-dynamic.onnx",
        ]
    )
    assert (selection.bundle.project, selection.bundle.version) == ("tiny", "0.1.0")
    for artifact in selection.artifacts:
        ref, result = artifact.ref, results[artifact.ref.path]
        assert ref.sha256 == hashlib.sha256(artifact.local_path.read_bytes()).hexdigest() == result.sha256
        assert ref.size_bytes == artifact.local_path.stat().st_size
        assert (ref.model, ref.variant, ref.platform, ref.format) == (
            "embedder",
            result.variant,
            "any",
            "onnx",
        )
        assert artifact.input_range == pytest.approx((-127.5, 127.5))  # (0..255 - mean 127.5) / std 1


def test_every_artifact_carries_its_validation(built: BuildOutcome) -> None:
    written = Manifest.model_validate_json((built.bundle / "manifest.json").read_text())
    results = _results(built)
    for artifact in written.artifacts:
        result, validation = results[artifact.path], artifact.validation
        assert (artifact.runtime, artifact.precision) == (result.runtime, result.precision)
        assert validation.not_validated_reason is None and set(validation.metrics) == set(result.modes)
        assert validation.gates == result.gates and validation.passed == result.passed
        assert validation.details == json.loads(json.dumps(result.details))
        assert [i.name for i in artifact.inputs] == [i.name for i in written.models[0].inputs]
        # ROC curves stay in results.json; the verification numbers are all here
        for mode in validation.metrics.values():
            for out in mode.outputs:
                assert out.verification is not None and out.verification.roc_fpr == []
                assert out.verification.auc == result.modes[mode.mode].output(out.name).verification.auc  # type: ignore[union-attr]


def test_content_sha256_covers_everything_but_itself_and_built_at(built: BuildOutcome) -> None:
    data = json.loads((built.bundle / "manifest.json").read_text())
    content = {k: v for k, v in data.items() if k not in ("content_sha256", "built_at")}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    assert data["content_sha256"] == digest
    later = manifest(built.result, [], built_at="2000-01-01T00:00:00+00:00")
    assert later.content_sha256 != digest  # different artifacts, different digest
    again = manifest(built.result, [], built_at="2099-01-01T00:00:00+00:00")
    assert again.content_sha256 == later.content_sha256


def test_a_platform_artifact_comes_out_with_its_platform_and_reason(built: BuildOutcome) -> None:
    """What a target adds: a ModelResult.artifacts entry and the file, described and readable."""
    from packager.assemble import BundleFile

    model = built.result.models[0]
    data = b"TFL3 not really a model"
    sha = hashlib.sha256(data).hexdigest()
    tflite = model.variants[0].model_copy(
        update={
            "file": TFLITE,
            "sha256": sha,
            "size_bytes": len(data),
            "modes": {},
            "gates": [],
            "platform": "android",
            "runtime": "tflite",
            "format": "tflite",
            "precision": "fp16",
            "not_validated_reason": "test: no LiteRT interpreter run",
            "details": {"partitions": 1},
        }
    )
    result = built.result.model_copy(update={"models": [model.model_copy(update={"artifacts": [tflite]})]})
    (built.bundle / TFLITE).parent.mkdir(parents=True)
    (built.bundle / TFLITE).write_bytes(data)
    file = BundleFile(
        built.bundle / TFLITE, TFLITE, "embedder", "fp16", sha, len(data), model.inputs, model.outputs
    )
    (built.bundle / "manifest.json").write_text(manifest(result, [file]).to_json())

    [artifact] = Manifest.model_validate_json((built.bundle / "manifest.json").read_text()).artifacts
    assert (artifact.platform, artifact.runtime, artifact.format, artifact.precision) == (
        "android",
        "tflite",
        "tflite",
        "fp16",
    )
    assert artifact.validation.not_validated_reason == "test: no LiteRT interpreter run"
    assert artifact.validation.details == {"partitions": 1}
    [selected] = select_artifacts(built.bundle / "android", {"tflite", "onnx"}).artifacts
    assert (selected.ref.path, selected.ref.sha256, selected.ref.platform) == (TFLITE, sha, "android")


def test_an_artifact_its_tool_cannot_write_the_same_twice_says_why(built: BuildOutcome) -> None:
    """The making step's record names the tool and what varies; the manifest carries it per artifact."""
    from packager.assemble import BundleFile

    model = built.result.models[0]
    fp16 = model.variants[0]
    why = "the converter writes a random id into the file"
    file = BundleFile(
        built.bundle / fp16.file, fp16.file, "embedder", "fp16", fp16.sha256, fp16.size_bytes, [], [], why
    )
    [artifact] = Manifest.model_validate_json(manifest(built.result, [file]).to_json()).artifacts
    assert (artifact.path, artifact.nondeterminism) == ("models/embedder/fp16.onnx", why)
    written = Manifest.model_validate_json((built.bundle / "manifest.json").read_text())
    assert [a.nondeterminism for a in written.artifacts] == [None, None, None]


def test_a_shipped_file_without_a_result_is_refused(built: BuildOutcome) -> None:
    from packager.assemble import BundleFile

    stray = BundleFile(Path("x"), "android/loader.kt", "embedder", "fp32", "0" * 64, 1, [], [])
    with pytest.raises(ValueError, match=r"android/loader\.kt of model 'embedder' has no result"):
        manifest(built.result, [stray])


def test_a_manifest_of_another_schema_version_is_refused_with_the_fix(built: BuildOutcome) -> None:
    path = built.bundle / "manifest.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "schema_version": 5}))
    expected = (
        rf"{re.escape(str(path))}: manifest schema_version 5 found, 7 expected\. "
        r"Fix: rebuild the bundle with packager"
    )
    with pytest.raises(BundleError, match=expected):
        select_artifacts(built.bundle, {"onnx"})
    path.write_text(json.dumps({**data, "schema_version": 8}))
    with pytest.raises(BundleError, match=r"8 found, 7 expected\. Fix: use a device-bench as new"):
        select_artifacts(built.bundle, {"onnx"})


def test_a_manifest_that_does_not_validate_names_the_field(built: BuildOutcome) -> None:
    path = built.bundle / "manifest.json"
    data = json.loads(path.read_text())
    del data["artifacts"][1]["sha256"]
    path.write_text(json.dumps(data))
    with pytest.raises(
        BundleError, match=r"does not match schema_version 7 at artifacts\.1\.sha256: Field required"
    ):
        select_artifacts(built.bundle, {"onnx"})
    path.write_text("{not json")
    with pytest.raises(BundleError, match="manifest is not JSON"):
        select_artifacts(built.bundle, {"onnx"})


def test_schema_command_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "manifest"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == Manifest.model_json_schema()
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    artifact = schema["$defs"]["ManifestArtifact"]
    assert {"sha256", "platform", "runtime", "format", "precision", "validation"} <= set(artifact["required"])
    assert "the target's name" in artifact["properties"]["platform"]["description"]
