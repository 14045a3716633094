"""Per-node quantization sensitivity: how much signal each node loses when it runs in INT8.

Runs the float model and the fully quantized QDQ model (QDQ in float, the mobile-kernel numerics)
on a few inputs, reads every candidate's inputs and outputs in both, and scores a node by the drop
in signal-to-quantization-noise ratio (``metrics.sqnr_db``, pooled over the inputs) from its inputs
to its output: the error that node adds, not the error it inherited. Cheap (two runs) and ranks the
nodes to keep in float.

Matching the two graphs. ORT's QDQ quantizer removes and renames tensors, so a float tensor's name
is no key into the quantized graph: a Relu/Clip after a quantized node is deleted and folded into
that node's output QuantizeLinear (the producer's output tensor then takes the activation's name,
with the *pre*-activation values; only after QuantizeLinear→DequantizeLinear, whose range starts at
0 / ends at 6, do the values equal the activation's output), and a graph output's producer writes
``<name>_QuantizeLinear_Input``. Every tensor is therefore found through the nodes, which keep their
names, and compared where the rest of the network reads it:

* a node's **inputs** are the tensors it reads in the QDQ graph (``qdq_node.input[i]``: the values
  after their QuantizeLinear→DequantizeLinear), against the float node's ``input[i]``;
* a node's **output** is compared where its readers read it (a surviving consumer's matching input,
  or the graph output of that name), after any Relu/Clip the quantizer folded into it: the float
  side is then the *last folded activation's* output. A node plus its folded activations is one
  unit; its loss is what rounding its weights and its output to 8 bits costs, and every rounding
  of an activation is counted once, at the node that writes it;
* a folded activation is no node of its own in the quantized graph and cannot be kept in float by
  itself: its entry names its host in ``scored_with``, has a loss of 0 dB, and its error is in
  the host's score.

A tensor with no counterpart (no surviving reader, e.g. only unnamed nodes read it) falls back to
the node's own output in the QDQ graph when nothing was folded into it, and is otherwise left out
(logged); a node with nothing comparable scores 0 dB. Unnamed nodes are never matched or folded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from packager.validate.metrics import SQNR_CAP_DB, sqnr_db

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeSensitivity:
    node: str
    op_type: str
    input_sqnr_db: float
    output_sqnr_db: float
    float_weight_bytes: int
    """Bytes this node's float weights take; keeping it in float costs about 3/4 of this in size."""
    scored_with: str | None = None
    """The node the quantizer folded this one into (its error is in that node's score); None when
    this node runs as a node of its own in the quantized graph."""

    @property
    def loss_db(self) -> float:
        return self.input_sqnr_db - self.output_sqnr_db


@dataclass(frozen=True)
class _Unit:
    """A float node as the QDQ graph runs it: comparison points as (float tensor, QDQ tensor) pairs."""

    inputs: list[tuple[str, str]]
    outputs: list[tuple[str, str]]
    folded: list[str] = field(default_factory=list)
    """Names of the float nodes (Relu/Clip) the quantizer folded into this node's output."""


def _match(float_graph: onnx.GraphProto, qdq_graph: onnx.GraphProto) -> dict[str, _Unit]:
    """One :class:`_Unit` per named float node that survives (same name and op) in ``qdq_graph``."""
    survivors = {n.name: n for n in qdq_graph.node if n.name}
    inits = {t.name for t in float_graph.initializer}
    float_outputs = {o.name for o in float_graph.output}
    qdq_outputs = {o.name for o in qdq_graph.output}
    readers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in float_graph.node:
        for port, tensor in enumerate(node.input):
            readers.setdefault(tensor, []).append((node, port))

    def survives(node: onnx.NodeProto) -> bool:
        twin = survivors.get(node.name) if node.name else None
        return twin is not None and twin.op_type == node.op_type

    def folded_chain(tensor: str) -> tuple[str, list[str]]:
        """Follow single readers the quantizer deleted (named, gone, reading ``tensor`` first)."""
        chain: list[str] = []
        while tensor not in float_outputs and len(readers.get(tensor, [])) == 1:
            reader, port = readers[tensor][0]
            if not reader.name or survives(reader) or port != 0 or len(reader.output) != 1:
                break
            chain.append(reader.name)
            tensor = reader.output[0]
        return tensor, chain

    def read_as(tensor: str) -> str | None:
        """The QDQ tensor that readers of float ``tensor`` read (graph outputs keep their names)."""
        if tensor in float_outputs:
            return tensor if tensor in qdq_outputs else None
        for reader, port in readers.get(tensor, []):
            if survives(reader):
                return survivors[reader.name].input[port]
        return None

    units: dict[str, _Unit] = {}
    for node in float_graph.node:
        if not survives(node):
            continue
        twin = survivors[node.name]
        inputs = [
            (t, twin.input[i])
            for i, t in enumerate(node.input)
            if t and t not in inits and i < len(twin.input)
        ]
        outputs, folded = [], []
        for k, tensor in enumerate(node.output):
            if not tensor:
                continue
            end, chain = folded_chain(tensor)
            folded += chain
            # Without a reader, the node's own output is comparable only if nothing was folded into it.
            quantized = read_as(end) or (twin.output[k] if not chain and k < len(twin.output) else None)
            if quantized is None:
                log.debug("sensitivity: no counterpart of %s (output of %s) in the QDQ graph", end, node.name)
                continue
            outputs.append((end, quantized))
        units[node.name] = _Unit(inputs, outputs, folded)
    return units


def _activations(model: onnx.ModelProto, names: list[str], data: np.ndarray) -> dict[str, np.ndarray]:
    """Values of ``names`` for each sample of ``data`` [N, *input_shape[1:]]: arrays [N, *shape].

    Graph inputs are taken from the feed (onnxruntime does not echo an input as an output); every
    other name is added as a graph output, and the graph runs unoptimized (reference mode numerics).
    """
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(model.SerializeToString())
    input_name = model.graph.input[0].name
    fetched = [n for n in names if n != input_name]
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in fetched if n not in existing)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for sample in data:
        feed = sample[None].astype(np.float32)
        values = dict(zip(fetched, session.run(fetched, {input_name: feed}), strict=True))
        values[input_name] = feed
        for name in names:
            collected[name].append(values[name])
    return {n: np.stack(v) for n, v in collected.items()}


def node_sensitivity(
    float_model: Path, qdq_model: Path, data: np.ndarray, candidates: list[str]
) -> list[NodeSensitivity]:
    """Sensitivity of each candidate node of ``float_model`` (one entry each), most damaging first.

    ``qdq_model`` is ``float_model`` quantized by ORT's QDQ quantizer with every candidate in INT8;
    ``data`` [N, *input_shape[1:]] feeds both. Tensors are matched through node names as the module
    docstring says. Raises ValueError for a candidate that is not a node of ``float_model``.
    """
    import onnx
    from onnx import numpy_helper

    float_proto, qdq_proto = onnx.load(str(float_model)), onnx.load(str(qdq_model))
    graph = float_proto.graph
    nodes = {n.name: n for n in graph.node if n.name}
    unknown = sorted(set(candidates) - set(nodes))
    if unknown:
        raise ValueError(f"not nodes of {float_model.name}: {', '.join(unknown)}")
    units = _match(graph, qdq_proto.graph)
    host = {folded: name for name, unit in units.items() for folded in unit.folded}
    involved = [units[c] for c in {*candidates, *(host[c] for c in candidates if c in host)} if c in units]
    pairs = {pair for unit in involved for pair in [*unit.inputs, *unit.outputs]}
    float_acts = _activations(float_proto, sorted({f for f, _ in pairs}), data)
    qdq_acts = _activations(qdq_proto, sorted({q for _, q in pairs}), data)

    def sqnr(pairs: list[tuple[str, str]]) -> float | None:
        # A float tensor that is empty or holds NaN/inf (say a -inf attention mask) has no SQNR.
        ok = [(f, q) for f, q in pairs if float_acts[f].size and np.isfinite(float_acts[f]).all()]
        return min((sqnr_db(float_acts[f], qdq_acts[q]) for f, q in ok), default=None)

    inits = {t.name: t for t in graph.initializer}
    results = []
    for name in candidates:
        node = nodes[name]
        weight_bytes = sum(numpy_helper.to_array(inits[t]).nbytes for t in node.input if t in inits)
        if name in units:
            input_sqnr = sqnr(units[name].inputs)
            input_sqnr = SQNR_CAP_DB if input_sqnr is None else input_sqnr
            output_sqnr = sqnr(units[name].outputs)
            if output_sqnr is None:
                log.warning("sensitivity: no output of %s found in the QDQ graph; scored 0 dB", name)
                output_sqnr = input_sqnr
            results.append(NodeSensitivity(name, node.op_type, input_sqnr, output_sqnr, weight_bytes))
        elif name in host:
            # Folded: it adds nothing of its own; its clamp is part of the host's output rounding.
            at = sqnr(units[host[name]].outputs)
            at = SQNR_CAP_DB if at is None else at
            results.append(NodeSensitivity(name, node.op_type, at, at, weight_bytes, host[name]))
        else:
            log.warning("sensitivity: %s is not in the QDQ graph and was folded into no node", name)
            results.append(NodeSensitivity(name, node.op_type, SQNR_CAP_DB, SQNR_CAP_DB, weight_bytes))
    return sorted(results, key=lambda s: (-s.loss_db, s.node))
