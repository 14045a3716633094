"""Per-node quantization sensitivity: how much signal each node loses when it runs in INT8.

Runs the float model and the fully quantized QDQ model (QDQ in float, the mobile-kernel numerics)
on a few inputs, reads every node's output in both, and scores a node by the drop in
signal-to-quantization-noise ratio (dB) from its inputs to its output: the error that node adds,
not the error it inherited. Cheap (two runs) and ranks the nodes to keep in float.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SQNR_CAP_DB = 80.0
"""An exact tensor has infinite SQNR; cap it so differences stay finite and comparable."""


@dataclass(frozen=True)
class NodeSensitivity:
    node: str
    op_type: str
    input_sqnr_db: float
    output_sqnr_db: float
    float_weight_bytes: int
    """Bytes this node's float weights take; keeping it in float costs about 3/4 of this in size."""

    @property
    def loss_db(self) -> float:
        return self.input_sqnr_db - self.output_sqnr_db


def _sqnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    noise = float(np.sum((reference.astype(np.float64) - candidate.astype(np.float64)) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    if noise == 0.0:
        return SQNR_CAP_DB
    if signal == 0.0:
        return -SQNR_CAP_DB
    return min(SQNR_CAP_DB, 10.0 * math.log10(signal / noise))


def _activations(
    model_path: Path, names: list[str], data: np.ndarray, optimize: bool
) -> dict[str, np.ndarray]:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(model_path))
    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for sample in data:
        outputs = session.run(names, {input_name: sample[None]})
        for name, value in zip(names, outputs, strict=True):
            collected[name].append(value)
    return {n: np.stack(v) for n, v in collected.items()}


def node_sensitivity(
    float_model: Path, qdq_model: Path, data: np.ndarray, candidates: list[str]
) -> list[NodeSensitivity]:
    """Sensitivity of each candidate node, most damaging first."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(float_model)).graph
    inits = {t.name: t for t in graph.initializer}
    nodes = [n for n in graph.node if n.name in set(candidates)]
    graph_inputs = {i.name for i in graph.input}
    tensors = sorted({t for n in nodes for t in [*n.input, *n.output] if t and t not in inits})
    float_acts = _activations(float_model, tensors, data, optimize=False)
    qdq_acts = _activations(qdq_model, tensors, data, optimize=False)

    def sqnr(name: str) -> float:
        if name in graph_inputs:
            return SQNR_CAP_DB
        return _sqnr(float_acts[name], qdq_acts[name])

    results = []
    for node in nodes:
        acts_in = [t for t in node.input if t and t not in inits]
        input_sqnr = min((sqnr(t) for t in acts_in), default=SQNR_CAP_DB)
        output_sqnr = min(sqnr(t) for t in node.output if t)
        weight_bytes = sum(numpy_helper.to_array(inits[t]).nbytes for t in node.input if t in inits)
        results.append(NodeSensitivity(node.name, node.op_type, input_sqnr, output_sqnr, weight_bytes))
    return sorted(results, key=lambda s: (-s.loss_db, s.node))
