"""Tiny real ONNX models and bundles laid out as the core writes them (manifest.json + artifacts)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_onnx(seed: int = 0) -> onnx.ModelProto:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm: an embedder shape in 5 nodes."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.3, (16, 8)).astype(np.float32), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["data", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["fc1"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 16])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_bundle(root: Path, files: dict[str, bytes]) -> Path:
    """dist/<project>-<version>/ with the given files and a manifest.json listing them."""
    artifacts = []
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        artifacts.append(
            {
                "path": rel,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size_bytes": len(data),
                "model": Path(rel).parent.name,
                "variant": Path(rel).stem,
                "format": Path(rel).suffix.lstrip("."),
                "platform": "android" if rel.startswith("android/") else "any",
            }
        )
    manifest = {
        "schema_version": 1,
        "project": {"name": "faceid", "version": "1.4.0"},
        "artifacts": artifacts,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root
