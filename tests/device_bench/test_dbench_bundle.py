"""Which artifacts a run selects: manifest at or above PATH, subfolders, fallback scan."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from device_bench.bundle import select_artifacts
from device_bench.errors import BundleError
from device_bench.tools import TOOLS


def test_subfolder_uses_the_manifest_above_it(bundle: Path) -> None:
    selection = select_artifacts(bundle / "android", TOOLS.formats())
    [artifact] = selection.artifacts
    assert artifact.ref.path == "android/face_embedder/fp32.tflite"
    assert artifact.ref.sha256 == hashlib.sha256(artifact.local_path.read_bytes()).hexdigest()
    assert selection.bundle.project == "faceid" and selection.bundle.version == "1.4.0"
    assert selection.bundle.manifest == str(bundle / "manifest.json")


def test_root_selects_every_runnable_format(bundle: Path) -> None:
    paths = [a.ref.path for a in select_artifacts(bundle, TOOLS.formats()).artifacts]
    assert sorted(paths) == [
        "android/face_embedder/fp32.tflite",
        "models/face_embedder/fp32.onnx",
        "models/face_embedder/int8-qdq.onnx",
    ]
    assert [a.ref.path for a in select_artifacts(bundle, {"onnx"}).artifacts] == [
        "models/face_embedder/fp32.onnx",
        "models/face_embedder/int8-qdq.onnx",
    ]


def test_manifest_sha_is_recorded_not_recomputed(bundle: Path) -> None:
    manifest = bundle / "manifest.json"
    actual = hashlib.sha256((bundle / "models/face_embedder/fp32.onnx").read_bytes()).hexdigest()
    manifest.write_text(manifest.read_text().replace(actual, "feed" + actual[4:]))
    first = select_artifacts(bundle / "models", {"onnx"}).artifacts[0]
    assert first.ref.sha256 == "feed" + actual[4:]


def test_missing_file_listed_in_manifest(bundle: Path) -> None:
    (bundle / "models/face_embedder/int8-qdq.onnx").unlink()
    missing = r"lists models/face_embedder/int8-qdq\.onnx but the file is missing"
    with pytest.raises(BundleError, match=missing):
        select_artifacts(bundle, {"onnx"})


def test_without_manifest_files_are_scanned_and_hashed(tmp_path: Path) -> None:
    (tmp_path / "face_embedder").mkdir()
    (tmp_path / "face_embedder" / "fp16.ort").write_bytes(b"ort bytes")
    (tmp_path / "notes.txt").write_text("not a model")
    [artifact] = select_artifacts(tmp_path, TOOLS.formats()).artifacts
    assert (artifact.ref.model, artifact.ref.variant, artifact.ref.format) == ("face_embedder", "fp16", "ort")
    assert artifact.ref.sha256 == hashlib.sha256(b"ort bytes").hexdigest()


def test_nothing_to_run_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("x")
    with pytest.raises(BundleError, match=r"no artifacts to benchmark \(\.onnx, \.ort, \.tflite\)"):
        select_artifacts(tmp_path, TOOLS.formats())
    with pytest.raises(BundleError, match="does not exist"):
        select_artifacts(tmp_path / "nope", TOOLS.formats())


def test_input_range_follows_the_manifest_preprocessing(tmp_path: Path) -> None:
    from bundle_factory import manifest_model, tiny_onnx, write_bundle

    preprocessing: dict[str, object] = {"pixel_range": [0, 255], "mean": [127.5], "std": [128]}
    root = write_bundle(
        tmp_path / "dist" / "faceid-1.4.0",
        {"models/face_embedder/fp32.onnx": tiny_onnx().SerializeToString()},
        models=[manifest_model("face_embedder", preprocessing)],
    )
    (artifact,) = select_artifacts(root, {"onnx"}).artifacts
    assert artifact.input_range == pytest.approx((-127.5 / 128, 127.5 / 128))


def test_input_range_is_unknown_without_preprocessing(bundle: Path) -> None:
    assert all(a.input_range is None for a in select_artifacts(bundle, {"onnx", "tflite"}).artifacts)
