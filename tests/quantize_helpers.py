"""Helpers for recipe tests: a prepared tiny reference and calibration tensors."""

from __future__ import annotations

from pathlib import Path

import model_factory
import numpy as np
import onnx
import onnxruntime as ort

from packager.config import parse_config
from packager.prepare import prepare_reference
from packager.quantize import registry
from packager.quantize.calibrated import run_calibration
from packager.quantize.registry import QuantizeContext


def context(tmp_path: Path, variant: str, **overrides: object) -> QuantizeContext:
    source = model_factory.save(
        model_factory.mobilefacenet_like(size=32, seed=4, opset=11), tmp_path / "src.onnx"
    )
    model = {
        "name": "m",
        "source": str(source),
        "input": {"size": [32, 32]},
        "calibration": {"images": str(tmp_path), "count": 16, "min_count": 1, "method": "minmax"},
        "evaluation": {"pairs": "p.txt"},
        "variants": [variant],
        **overrides,
    }
    spec = parse_config(
        {"project": {"name": "a", "version": "1"}, "models": [model]}, tmp_path / "p.toml"
    ).models[0]
    prepared = prepare_reference(spec, tmp_path / "ref" / "fp32.onnx")
    calibrated = None
    if spec.calibration is not None and registry.get(variant).needs_calibration:
        calibrated = tmp_path / "calibrated"
        calibrated.mkdir()
        run_calibration(prepared.path, calibration_data(), spec.calibration, 16, calibrated)
    work = tmp_path / "work"
    work.mkdir()
    return QuantizeContext(spec, prepared.path, tmp_path / f"{variant}.onnx", work, calibrated)


def calibration_data() -> np.ndarray:
    return np.random.default_rng(7).uniform(0, 255, (16, 3, 32, 32)).astype(np.float32)


def op_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def mean_cosine(reference: Path, candidate: Path, data: np.ndarray) -> float:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sessions = [ort.InferenceSession(str(p), options) for p in (reference, candidate)]
    a, b = (np.concatenate([s.run(None, {"data": x[None]})[0] for x in data]) for s in sessions)
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.mean())
