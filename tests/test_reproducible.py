"""Reproducibility (issue 11): the same inputs built twice, in two folders with clean caches, give the same
files; whatever a tool cannot write the same twice is named in the manifest with the reason.

The rule is in :mod:`packager.manifest` (*Reproducibility*). One small build per folder, both targets,
with every kind of platform file: ``.ort`` (Runtime style, with runtime optimization records), ``.tflite``,
``.mlpackage``, Kotlin and Swift sources, both zips.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from packager.build import BuildOptions
from packager.config import load_config
from packager.manifest import Manifest
from packager.pipeline import build_project
from targets.ort_mobile.canonical import canonical_ort, read_resolver
from targets.ort_mobile.ort_format import convert_to_ort

TARGETS = """
[android]
package = "com.example.tiny"
module = "tiny"
tflite_precisions = ["fp32", "fp16"]

[ios]
module = "Tiny"
coreml_precisions = ["fp16"]
"""
MEASURED = ("latency", "baseline_latency", "seconds", "host_speed")
"""The keys holding this host's measurements (timings), which vary from build to build by nature."""
DESCRIBING = ("manifest.json", "results.json", "report.md", "report.html")
"""The files that describe the build, host measurements included."""


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, tiny_project_in) -> tuple[Path, Path]:
    """The tiny project built twice, each copy in its own folder (at another depth) with its own fresh
    cache: once in this process after other Keras work (as in a test session or a long-lived worker),
    once with the command line in a fresh process (its own hash seeds) from another working directory."""
    first = tiny_project_in(tmp_path_factory.mktemp("reproducible") / "a", '["fp16"]', TARGETS)
    second = tiny_project_in(tmp_path_factory.mktemp("reproducible") / "b" / "deeper", '["fp16"]', TARGETS)
    _build_a_keras_model()
    one = build_project(load_config(first), BuildOptions()).bundle
    command = [sys.executable, "-m", "packager.cli", "build", str(second)]
    env = {k: v for k, v in os.environ.items() if k != "PACKAGER_CACHE"}  # its own cache, not a shared one
    done = subprocess.run(
        command, cwd=second.parent.parent, env=env, timeout=900, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return one, second.parent / "dist" / one.name


def _build_a_keras_model() -> None:
    """Keras numbers the names of every model and layer a process makes (``model``, ``model_1``...)."""
    import tf_keras

    inputs = tf_keras.Input((4,))
    tf_keras.Model(inputs, tf_keras.layers.Dense(2)(inputs))


def _manifest(bundle: Path) -> Manifest:
    return Manifest.model_validate_json((bundle / "manifest.json").read_text())


def _named(bundles: tuple[Path, Path]) -> dict[str, str]:
    """Artifact path -> why its bytes may differ, as either manifest says."""
    return {
        a.path: a.nondeterminism
        for bundle in bundles
        for a in _manifest(bundle).artifacts
        if a.nondeterminism is not None
    }


def _may_differ(bundles: tuple[Path, Path]) -> set[str]:
    """What the rule lets differ: each named artifact, and the generated sources of its platform (the iOS
    loaders put their artifacts' sha256 into cache keys)."""
    named = set(_named(bundles))
    platforms = {path.split("/", 1)[0] for path in named}
    sources = {s.path for s in _manifest(bundles[0]).sources if s.platform in platforms}
    return named | sources


def _within(path: str, allowed: set[str]) -> bool:
    """``path`` is one of ``allowed`` or inside one (a file of an .mlpackage folder)."""
    return any(path == a or path.startswith(a + "/") for a in allowed)


def test_every_reproducible_artifact_and_source_has_the_same_sha256(bundles: tuple[Path, Path]) -> None:
    first, second = (_manifest(b) for b in bundles)
    allowed = _may_differ(bundles)
    formats = {a.format for a in first.artifacts if a.platform != "any"}
    assert formats == {"ort", "tflite", "mlpackage"}  # every kind of platform file is compared
    assert [a.path for a in first.artifacts] == [a.path for a in second.artifacts]
    for one, other in zip(first.artifacts, second.artifacts, strict=True):
        if one.path not in allowed:
            assert (one.sha256, one.size_bytes) == (other.sha256, other.size_bytes), one.path
    kinds = {Path(s.path).suffix for s in first.sources}
    assert {".kt", ".swift", ".kts"} <= kinds
    assert [s.path for s in first.sources] == [s.path for s in second.sources]
    for one, other in zip(first.sources, second.sources, strict=True):
        if one.path not in allowed:
            assert one.sha256 == other.sha256, one.path


def test_the_platform_zips_are_the_same_bytes_or_differ_only_where_the_manifest_says(
    bundles: tuple[Path, Path],
) -> None:
    first, second = bundles
    allowed = _may_differ(bundles)
    zips = sorted(p.name for p in first.glob("*.zip"))
    assert zips == ["android.zip", "ios.zip"] == sorted(p.name for p in second.glob("*.zip"))
    for name in zips:
        platform = name.removesuffix(".zip")
        if not any(path.startswith(platform + "/") for path in allowed):
            assert (first / name).read_bytes() == (second / name).read_bytes(), name
            continue
        with zipfile.ZipFile(first / name) as one, zipfile.ZipFile(second / name) as other:
            assert one.namelist() == other.namelist(), name
            for info in one.infolist():
                twin = other.getinfo(info.filename)
                assert (info.date_time, info.external_attr) == (twin.date_time, twin.external_attr)
                if not _within(info.filename, allowed):
                    assert one.read(info) == other.read(twin), f"{name}: {info.filename}"


def test_every_file_that_differs_is_explained_by_an_artifact_the_manifest_names(
    bundles: tuple[Path, Path],
) -> None:
    first, second = bundles
    assert all(reason.strip() for reason in _named(bundles).values())

    def files(bundle: Path) -> list[str]:
        return sorted(
            p.relative_to(bundle).as_posix()
            for p in bundle.rglob("*")
            if p.is_file() and p.relative_to(bundle).as_posix() not in DESCRIBING and p.suffix != ".zip"
        )

    assert files(first) == files(second)
    differ = [f for f in files(first) if (first / f).read_bytes() != (second / f).read_bytes()]
    allowed = _may_differ(bundles)
    assert [f for f in differ if not _within(f, allowed)] == []


def _masked(bundle: Path, allowed: set[str]) -> object:
    """manifest.json without ``built_at``, its digest and this host's measurements, with the checksums of
    what the rule lets differ (``allowed`` and the zips holding it) blanked."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    platforms = {path.split("/", 1)[0] for path in allowed}
    for listed in (*manifest["artifacts"], *manifest["sources"], *manifest["archives"]):
        if listed["path"] in allowed or listed["path"] in {f"{p}.zip" for p in platforms}:
            listed["sha256"] = listed["size_bytes"] = None

    def mask(value: object) -> object:
        if isinstance(value, dict):
            return {k: mask(v) for k, v in value.items() if k not in MEASURED}
        if isinstance(value, list):
            return [mask(v) for v in value]
        return value

    manifest["reports"] = [report["path"] for report in manifest["reports"]]  # they print measurements
    return mask({k: v for k, v in manifest.items() if k not in ("built_at", "content_sha256")})


def test_the_manifests_differ_only_in_host_measurements(bundles: tuple[Path, Path]) -> None:
    allowed = _may_differ(bundles)
    first, second = (_masked(b, allowed) for b in bundles)
    digests = [hashlib.sha256(json.dumps(m, sort_keys=True).encode()).hexdigest() for m in (first, second)]
    assert first == second and digests[0] == digests[1]


def test_a_rebuild_from_the_same_cache_has_the_same_content_sha256(
    bundles: tuple[Path, Path], tmp_path: Path
) -> None:
    """The measurements come from the cache then, so the whole content is equal."""
    first = bundles[0]
    config = first.parent.parent / "packager.toml"
    again = build_project(load_config(config), BuildOptions(), out=tmp_path / "dist").bundle
    assert _manifest(again).content_sha256 == _manifest(first).content_sha256


def test_the_saved_model_fingerprint_id_is_derived_from_its_content(bundles: tuple[Path, Path]) -> None:
    """TensorFlow writes a random id into fingerprint.pb (targets/saved_model.py). The SavedModel does
    not ship, but the Core ML step and its stand-in validation are keyed by its content."""
    from tensorflow.core.protobuf.fingerprint_pb2 import FingerprintDef

    for bundle in bundles:
        [folder] = (bundle.parent.parent / ".packager-cache").rglob("saved_model")
        fingerprint = FingerprintDef.FromString((folder / "fingerprint.pb").read_bytes())
        rest = FingerprintDef()
        rest.CopyFrom(fingerprint)
        rest.ClearField("uuid")
        digest = hashlib.sha256(rest.SerializeToString(deterministic=True)).digest()
        assert fingerprint.uuid == str(int.from_bytes(digest[:8], "little"))


# --- the .ort rewrite ---------------------------------------------------------------------------------------


def test_an_ort_file_is_written_canonically_and_loads_the_same(tmp_path: Path, tiny_assets: Path) -> None:
    """Two conversions give one file (the converter's own bytes differ from process to process, see
    targets/ort_mobile/canonical.py); rewriting it again changes nothing; onnxruntime reads the same
    kernel-type-string table from it."""
    import numpy as np
    import onnxruntime as ort

    one = convert_to_ort(tiny_assets / "model.onnx", tmp_path / "one", "Runtime")
    other = convert_to_ort(tiny_assets / "model.onnx", tmp_path / "other", "Runtime")
    data = one.ort_path.read_bytes()
    assert one.nondeterminism is None and other.nondeterminism is None
    assert data == other.ort_path.read_bytes()
    again = canonical_ort(data)
    assert again.problem is None and again.data == data
    assert read_resolver(data)  # the table is there, sorted
    x = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    reference = ort.InferenceSession(str(tiny_assets / "model.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    # the .ort holds the graph after basic optimizations (folded BatchNorms): float rounding only
    np.testing.assert_allclose(
        session.run(None, {name: x})[0], reference.run(None, {name: x})[0], rtol=1e-4, atol=1e-5
    )


def test_a_file_of_another_layout_is_kept_with_the_reason() -> None:
    found = canonical_ort(b"\x08\x00\x00\x00NOPE" + bytes(16))
    assert found.data == b"\x08\x00\x00\x00NOPE" + bytes(16)
    assert found.problem == "not an ORT format file (no ORTM identifier)"
