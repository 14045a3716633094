"""Helpers for recipe tests: a prepared tiny reference and calibration tensors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import model_factory
import numpy as np
import onnx
import onnxruntime as ort

from packager.assemble import merged_details
from packager.config import parse_config
from packager.prepare import prepare_reference
from packager.quantize import registry
from packager.quantize.calibrated import run_calibration
from packager.quantize.registry import AnalysisContext, QuantizeContext


def default_model() -> onnx.ModelProto:
    """The recipe tests' usual net: MobileFaceNet-shaped, opset 11 (so preparation upgrades it)."""
    return model_factory.mobilefacenet_like(size=32, seed=4, opset=11)


def context(
    tmp_path: Path,
    variant: str,
    build: Callable[[], onnx.ModelProto] = default_model,
    **overrides: object,
) -> QuantizeContext:
    """A prepared reference of ``build()`` (input ``data`` [1, 3, 32, 32], pixels 0..255), calibrated
    on :func:`calibration_data` when the variant needs it; ``overrides`` replace ``[[models]]`` fields."""
    source = model_factory.save(build(), tmp_path / "src.onnx")
    model = {
        "name": "m",
        "source": str(source),
        "input": {"size": [32, 32]},
        "calibration": {"images": str(tmp_path), "count": 16, "min_count": 1, "method": "minmax"},
        "evaluation": {"images": "eval"},
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
        run_calibration(
            prepared.path, calibration_data(), spec.calibration, 16, calibrated, output=spec.primary_output
        )
    work = tmp_path / "work"
    work.mkdir()
    return QuantizeContext(spec, prepared.path, tmp_path / f"{variant}.onnx", work, calibrated)


def calibration_data() -> np.ndarray:
    return np.random.default_rng(7).uniform(0, 255, (16, 3, 32, 32)).astype(np.float32)


def fp16_context(tmp_path: Path, model: onnx.ModelProto, data: np.ndarray | None = None) -> QuantizeContext:
    """A context for the fp16 recipe on ``model`` used as its own reference (input [1, C, 8, 8]),
    with ``data`` as calibration tensors (the range audit's input) when given."""
    reference = tmp_path / "reference.onnx"
    onnx.save(model, str(reference))
    calibration = None
    if data is not None:
        calibration = tmp_path / "calibration.npy"
        np.save(calibration, data)
    fields = {
        "name": "m",
        "source": str(reference),
        "input": {"size": [8, 8]},
        "output": {"kind": "embedding", "normalize": "none"},
        "evaluation": {"images": "eval"},
        "variants": ["fp16"],
    }
    if data is not None:
        fields["calibration"] = {"images": str(tmp_path), "min_count": 1}
    data_in = {"project": {"name": "a", "version": "1"}, "models": [fields]}
    spec = parse_config(data_in, tmp_path / "p.toml").models[0]
    work = tmp_path / "work"
    work.mkdir()
    decision = None
    if calibration is not None:  # what the plan's analyze[m:fp16] step does before quantize[m:fp16]
        decision = tmp_path / "decision.json"
        analysis = registry.get("fp16").analysis
        assert analysis is not None
        record = analysis(AnalysisContext(spec, reference, calibration, decision, work))
        (tmp_path / "analysis.json").write_text(json.dumps(record))
    return QuantizeContext(spec, reference, tmp_path / "fp16.onnx", work, decision=decision)


def run_fp16(ctx: QuantizeContext) -> dict[str, object]:
    """The fp16 recipe's details merged with its analysis record, as the bundle's manifest shows them."""
    analysis = ctx.output.parent / "analysis.json"
    described = json.loads(analysis.read_text()) if analysis.exists() else {}
    return merged_details(registry.get("fp16").run(ctx), described)


def op_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def mean_cosine(reference: Path, candidate: Path, data: np.ndarray, output: str | None = None) -> float:
    """Mean cosine of ``candidate``'s output to ``reference``'s over ``data``, reference mode (no graph
    optimizations); ``output`` names the output to compare (None = the first)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sessions = [ort.InferenceSession(str(p), options) for p in (reference, candidate)]
    names = None if output is None else [output]
    a, b = (np.concatenate([s.run(names, {"data": x[None]})[0] for x in data]) for s in sessions)
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.mean())


CONV_RELU_NETS = {"resnet_like": model_factory.resnet_like, "mobilenet_like": model_factory.mobilenet_like}
"""Nets whose Relu/Clip the QDQ quantizer folds away (parametrize with ``ids=list(CONV_RELU_NETS)``)."""

MIN_INT8_COSINE = 0.999
"""Bar for INT8 of :data:`CONV_RELU_NETS` vs FP32 on :func:`held_out_data`: measured 0.99988–0.99997
for int8-qdq, mixed and single-node exclusions over seeds 0–2 of both nets."""


def held_out_data() -> np.ndarray:
    """Inputs calibration never saw: [16, 3, 32, 32] float32 pixels 0..255."""
    return np.random.default_rng(11).uniform(0, 255, (16, 3, 32, 32)).astype(np.float32)


def output_names_in_onnxruntime(path: Path) -> list[str]:
    """Load ``path`` in onnxruntime with its default (all) graph optimizations, as an app does;
    raises when it cannot. Returns the output names."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [o.name for o in session.get_outputs()]


def float_weight_nodes(path: Path) -> set[str]:
    """Names of Conv/Gemm/MatMul nodes whose weights are a float initializer (not dequantized INT8)."""
    graph = onnx.load(str(path)).graph
    inits = {t.name for t in graph.initializer}
    return {
        n.name
        for n in graph.node
        if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")
        and len(n.input) > 1
        and n.input[1] in inits
    }


def node_names(path: Path) -> set[str]:
    return {n.name for n in onnx.load(str(path)).graph.node}
