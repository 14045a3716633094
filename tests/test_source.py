"""A model's content is its .onnx file plus its external data files (onnx/docs/ExternalData.md)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import model_factory
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from packager.build import BuildOptions
from packager.config import load_config
from packager.errors import ModelError
from packager.hashing import Hasher
from packager.pipeline import build_project
from packager.source import source_files, source_inputs, source_sha256


def _save_external(model: onnx.ModelProto, path: Path) -> Path:
    # onnx appends to an existing data file (offsets would move): write a fresh one.
    path.with_name(f"{path.name}.data").unlink(missing_ok=True)
    onnx.save(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=f"{path.name}.data",
        size_threshold=0,
    )
    return path


def _retrained(path: Path, seed: int) -> None:
    """New weights, same architecture: only the .data file changes, the .onnx stays byte-identical."""
    before = path.read_bytes()
    model = onnx.load(str(path))
    rng = np.random.default_rng(seed)
    for tensor in model.graph.initializer:
        weights = onnx.numpy_helper.to_array(tensor)
        noise = rng.normal(0, 0.3 * (float(np.abs(weights).mean()) + 1e-3), weights.shape)
        tensor.CopyFrom(onnx.numpy_helper.from_array((weights + noise).astype(weights.dtype), tensor.name))
    _save_external(model, path)
    assert path.read_bytes() == before


def _embed(model: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"data": x})[0].ravel()


def test_source_files_lists_the_external_data_file(tmp_path: Path) -> None:
    path = _save_external(model_factory.mobilefacenet_like(size=32), tmp_path / "m.onnx")
    assert source_files(path) == [path.resolve(), (tmp_path / "m.onnx.data").resolve()]
    assert list(source_inputs(path)) == ["source", "source_data:m.onnx.data"]


def test_a_model_without_external_data_is_one_file(tmp_path: Path) -> None:
    path = model_factory.save(model_factory.mobilefacenet_like(size=32), tmp_path / "m.onnx")
    assert source_files(path) == [path.resolve()]
    assert (
        source_sha256([path], lambda p: hashlib.sha256(p.read_bytes()).hexdigest())
        == hashlib.sha256(path.read_bytes()).hexdigest()
    )


def test_source_checksum_is_the_concatenation_of_model_and_data(tmp_path: Path) -> None:
    path = _save_external(model_factory.mobilefacenet_like(size=32), tmp_path / "m.onnx")
    files = source_files(path)
    expected = hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()
    assert source_sha256(files, lambda p: "unused") == expected


def test_a_kept_list_of_data_files_still_names_a_data_file_deleted_since(tmp_path: Path) -> None:
    path = _save_external(model_factory.mobilefacenet_like(size=32), tmp_path / "m.onnx")
    os.utime(path, ns=(time.time_ns() - 10**10,) * 2)  # old enough for the memo to keep it
    memo = tmp_path / "hashes.jsonl"
    assert source_files(path, Hasher(memo=memo)) == source_files(path)
    assert "onnx-external-data" in memo.read_text()
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(ModelError, match=r"external data file m\.onnx\.data not found"):
        source_files(path, Hasher(memo=memo))


def test_missing_external_data_file_names_it_and_the_fix(tmp_path: Path) -> None:
    path = _save_external(model_factory.mobilefacenet_like(size=32), tmp_path / "m.onnx")
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(ModelError, match=r"external data file m\.onnx\.data not found.*Fix: copy"):
        source_files(path)


def test_replacing_only_the_data_file_rebuilds_and_ships_the_new_weights(tiny_project) -> None:
    config_path = tiny_project(variants='["fp16"]')
    model = config_path.parent / "model.onnx"
    _save_external(onnx.load(str(model)), model)
    first = build_project(load_config(config_path), BuildOptions())
    old_manifest = json.loads((first.bundle / "manifest.json").read_text())

    _retrained(model, seed=99)
    second = build_project(load_config(config_path), BuildOptions())

    reran = sorted(s.name for s in second.steps if not s.cached)
    assert reran == [
        "analyze[embedder:fp16]",
        "prepare[embedder]",
        "quantize[embedder:fp16]",
        "validate[embedder:fp16]",
        "validate[embedder:fp32]",
    ]
    new_manifest = json.loads((second.bundle / "manifest.json").read_text())
    old_model, new_model = old_manifest["models"][0], new_manifest["models"][0]
    assert new_model["source_sha256"] != old_model["source_sha256"]
    assert new_model["source_files"]["model.onnx"] == old_model["source_files"]["model.onnx"]
    assert new_model["source_files"]["model.onnx.data"] != old_model["source_files"]["model.onnx.data"]
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 32, 32)).astype(np.float32)
    shipped = _embed(second.bundle / "models" / "embedder" / "fp32.onnx", x)
    source = _embed(model, x)
    assert float(shipped @ source / (np.linalg.norm(shipped) * np.linalg.norm(source))) > 0.99999
