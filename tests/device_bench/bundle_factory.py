"""Tiny real ONNX models and bundles laid out as the core writes them (manifest.json + artifacts).

The manifest is built with packager's own ``Manifest`` model, so it is always the schema packager writes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from packager.manifest import (
    SCHEMA_VERSION,
    ArtifactValidation,
    Manifest,
    ManifestArtifact,
    ManifestContent,
    ManifestModel,
    ManifestProject,
)
from packager.results import EvaluationFacts, IOInfo


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


RUNTIMES = {"onnx": "onnxruntime", "ort": "onnxruntime", "tflite": "tflite"}


def manifest_model(name: str, preprocessing: dict[str, object] | None = None) -> ManifestModel:
    """A model entry shaped like tiny_onnx's; device_bench reads its name and preprocessing."""
    return ManifestModel(
        name=name,
        source=f"{name}.onnx",
        source_sha256="0" * 64,
        source_files={},
        opset=13,
        primary_output="fc1",
        output_kinds={"fc1": "embedding"},
        preprocessing=preprocessing or {},
        inputs=[IOInfo(name="data", dtype="float32", shape=[1, 3, 16, 16])],
        outputs=[IOInfo(name="fc1", dtype="float32", shape=[1, 16])],
        evaluation=EvaluationFacts(
            images=0,
            from_images=0,
            from_pairs_only=0,
            pairs=0,
            positives=0,
            negatives=0,
            pairs_file=None,
            threshold=None,
        ),
        variants=[],
        failed_variants=[],
    )


def write_bundle(root: Path, files: dict[str, bytes], models: list[ManifestModel] | None = None) -> Path:
    """dist/<project>-<version>/ with the given files and a schema-3 manifest.json listing them.

    Artifacts keep the order of ``files``; each model is ``<folder>/<model>/<variant>.<format>`` and
    gets a ``manifest_model`` entry unless ``models`` are given.
    """
    artifacts = []
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        fmt = path.suffix.lstrip(".")
        artifacts.append(
            ManifestArtifact(
                path=rel,
                sha256=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data),
                model=path.parent.name,
                variant=path.stem,
                platform="android" if rel.startswith("android/") else "any",
                runtime=RUNTIMES.get(fmt, fmt),
                format=fmt,
                precision="int8" if "int8" in path.stem else path.stem,
                inputs=[],
                outputs=[],
                validation=ArtifactValidation(
                    metrics={},
                    not_validated_reason="made by the device_bench test bundle factory",
                    gate_mode="reference",
                    gates=[],
                    passed=True,
                    details={},
                ),
            )
        )
    if models is None:
        models = [manifest_model(name) for name in dict.fromkeys(a.model for a in artifacts)]
    content = ManifestContent(
        schema_version=SCHEMA_VERSION,
        project=ManifestProject(name="faceid", version="1.4.0"),
        config_sha256="0" * 64,
        gates_enforced=True,
        passed=True,
        tool_versions={},
        settings={},
        models=models,
        artifacts=artifacts,
    )
    (root / "manifest.json").write_text(Manifest.seal(content, "2024-01-01T00:00:00+00:00").to_json())
    return root
