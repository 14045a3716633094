"""FP16 range audit: which nodes would leave FP16's range on a phone, measured on the FP32 model.

Why it exists: onnxruntime's CPU EP on x86 has FP16 kernels for few ops; for the others its
InsertCastTransformer runs the node in float between Casts. An FP16 model validated on this host
therefore never overflows, while FP16 arithmetic (ARM NEON fp16 / XNNPACK f16 kernels, Core ML,
NNAPI) turns any value beyond 65504 into inf: an in-graph L2 norm of activations ~1e3 scores cosine
0.99999996 here and gives an all-zero embedding on a phone. So the audit runs the FP32 model with
every float tensor as an output over (a bounded number of) the calibration tensors and keeps the
offending nodes in float (onnxconverter-common's ``node_block_list``).

Measured per node, as the largest ``|value|`` over the audited images:

- its float outputs, and its float activation inputs: an input beyond the limit would reach an FP16
  node as inf through the converter's Cast to FP16, so the consumers of such a value stay float too,
  up to the first node whose output is back in range;
- accumulators its output hides: mean-type reductions (ReduceMean, GlobalAveragePool, AveragePool)
  sum ``count`` values before dividing, and XNNPACK's f16 gavgpool/avgpool microkernels add in FP16
  and scale afterwards, so the sum ``|mean| * count`` is what overflows; ReduceL2 sums the squares
  over its reduced axes (exactly ``output ** 2``); normalisations (LpNormalization,
  LayerNormalization, InstanceNormalization, GroupNormalization, MeanVarianceNormalization) sum the
  squares of their input over the normalised axes (LpNormalization with ``p=1``: absolute values),
  computed from the input during the run. Kernels that square the centred input (variance) sum
  at most that: for them it is an estimate from above.

Not measured: partial sums inside Conv/MatMul/Gemm beyond their output (they can exceed it only by
cancellation), and weights, which :func:`weights_out_of_range` checks without data.

Margin: a node stays float when its value exceeds ``FP16_MAX / margin``. The calibration set is a
sample; an input with more contrast than any in it scales activations about linearly, and squares
(``x * x``, Pow, ReduceSumSquare, variances) with the square of that. The default margin 4 covers an
input 2x beyond the calibration maximum through one squaring node (4x through linear ones). Plain
activations of conv nets peak far below it (PP-OCRv4 det: 2240 at 640x640); what the audit does
find there are the sums behind its squeeze-excitation GlobalAveragePools (up to 5.5e6, 84x FP16's
maximum, at 640x640), which stay float.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

log = logging.getLogger(__name__)

FP16_MAX = float(np.finfo(np.float16).max)
"""65504: the largest finite FP16 value; anything larger is inf in FP16 arithmetic."""
DEFAULT_MARGIN = 4.0
"""Headroom factor for values the calibration images did not reach (see the module docstring)."""
MAX_AUDIT_IMAGES = 32
"""Calibration tensors audited, spread evenly over the set: maxima settle well before this, and every
image costs one FP32 run per output chunk."""
RUN_BUDGET_BYTES = 512 * 2**20
"""Float outputs fetched per run. All intermediates of a detector at 640x640 take ~1.5 GB at once."""

_MEAN_OPS = frozenset({"ReduceMean", "GlobalAveragePool", "AveragePool"})
_NORMALISED_AXES: dict[str, Callable[[dict[str, Any], int], tuple[int, ...]]] = {
    "LpNormalization": lambda a, rank: (a.get("axis", -1) % rank,),
    "LayerNormalization": lambda a, rank: tuple(range(a.get("axis", -1) % rank, rank)),
    "InstanceNormalization": lambda a, rank: tuple(range(2, rank)),
    "GroupNormalization": lambda a, rank: (2,),  # of the input as [N, num_groups, -1]
    "MeanVarianceNormalization": lambda a, rank: tuple(sorted({x % rank for x in a.get("axes", [0, 2, 3])})),
}
"""The axes each normalisation sums its input's squares over, from its attributes (schema defaults)."""


@dataclass(frozen=True)
class TensorStats:
    max_abs: float
    """Largest ``|value|`` over the audited images (FP32)."""
    size: int
    """Elements per image."""


@dataclass(frozen=True)
class Measured:
    """What one FP32 run over the audited images saw."""

    tensors: dict[str, TensorStats]
    """The graph input and every typed float node output."""
    norm_sums: dict[str, tuple[float, str]]
    """By node name, for the normalisations whose input was measured: the largest sum of squares
    over the normalised axes (see :func:`norm_sum`) and what it is, in words."""
    untyped: int
    """Node outputs shape inference gave no type: not measured."""


@dataclass(frozen=True)
class NodeValue:
    """A node's largest value and what it is (an output, an input, a hidden sum)."""

    node: str
    op: str
    max_abs: float
    why: str

    def record(self, threshold: float | None = None) -> dict[str, object]:
        text = self.why if threshold is None else f"{self.why} > {threshold:.0f}"
        return {"node": self.node, "op": self.op, "max_abs": self.max_abs, "why": text}


@dataclass(frozen=True)
class RangeAudit:
    """The activation audit of one model; ``record()`` is what goes into the manifest."""

    images: int
    tensors: int
    margin: float
    kept_in_float: list[NodeValue]
    largest: NodeValue | None
    untyped: int = 0
    """Tensors shape inference gave no type: not audited."""

    @property
    def threshold(self) -> float:
        return FP16_MAX / self.margin

    def record(self) -> dict[str, object]:
        record: dict[str, object] = {
            "ran": True,
            "images": self.images,
            "tensors": self.tensors,
            "limit": FP16_MAX,
            "margin": self.margin,
            "threshold": self.threshold,
            "largest": self.largest.record() if self.largest else None,
            "kept_in_float": [k.record(self.threshold) for k in self.kept_in_float],
            "not_audited": "partial sums inside Conv/MatMul/Gemm beyond their outputs",
        }
        if self.untyped:
            record["tensors_without_type"] = self.untyped
        return record


@dataclass(frozen=True)
class WeightFinding:
    """A float initializer with a finite value beyond FP16's range."""

    initializer: str
    nodes: list[str]
    ops: list[str]
    value: float
    """The value of largest magnitude, signed."""

    def record(self) -> dict[str, object]:
        return {
            "initializer": self.initializer,
            "nodes": self.nodes,
            "ops": self.ops,
            "value": self.value,
            "limit": FP16_MAX,
            "would_clamp_to": float(np.copysign(FP16_MAX, self.value)),
            "action": "consumers kept in float; the weight stays FP32",
        }


def not_run(reason: str) -> dict[str, object]:
    """The record when no activation audit ran: says why instead of inventing ranges."""
    return {"ran": False, "reason": reason}


MAX_FINDINGS = 10


def weight_findings(weights: list[WeightFinding]) -> list[str]:
    """Out-of-range weights as sentences for the report's findings."""
    return [
        f"weight {w.initializer} of {', '.join(w.nodes)} holds {w.value:.4g}, beyond FP16's ±{FP16_MAX:.0f} "
        f"(conversion would clamp it to {np.copysign(FP16_MAX, w.value):.0f}): kept in float"
        for w in weights
    ]


def activation_findings(audit: dict[str, object]) -> list[str]:
    """The activation audit as sentences for the report's findings (the full record stays in the
    details)."""
    if not audit.get("ran"):
        return [f"FP16 activation range audit did not run: {audit.get('reason')}"]
    kept = audit.get("kept_in_float", [])
    assert isinstance(kept, list)
    found = [
        f"{k['op']} {k['node']}: {k['why']} on the calibration images: kept in float"
        for k in kept[:MAX_FINDINGS]
    ]
    if len(kept) > MAX_FINDINGS:
        found.append(f"... and {len(kept) - MAX_FINDINGS} more nodes kept in float (see fp16_range_audit)")
    return found


def weights_out_of_range(model: onnx.ModelProto) -> list[WeightFinding]:
    """Float initializers of the main graph with a finite ``|value| > FP16_MAX``.

    onnxconverter-common's ``convert_np_to_float16`` clamps such values to ``max_finite_val`` (and
    only warns), which destroys e.g. an unfolded BatchNorm variance of 1e8. Infinities are left as
    they are by the converter (FP16 has inf) and are not findings.
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    findings = []
    for tensor in model.graph.initializer:
        if tensor.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(tensor)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            continue
        extreme = float(finite.flat[int(np.argmax(np.abs(finite)))])
        if abs(extreme) > FP16_MAX:
            nodes = consumers.get(tensor.name, [])
            findings.append(
                WeightFinding(
                    tensor.name, [n.name for n in nodes], sorted({n.op_type for n in nodes}), extreme
                )
            )
    return findings


def weights_below(model: onnx.ModelProto, min_positive: float, skip: set[str]) -> int:
    """Float initializers (other than ``skip``) with non-zero values below ``min_positive``.

    The converter raises those to ``+-min_positive`` (1e-7 by default; FP16's smallest subnormal is
    6e-8): an absolute change below 1e-7, so a count is enough.
    """
    count = 0
    for tensor in model.graph.initializer:
        if tensor.data_type == TensorProto.FLOAT and tensor.name not in skip:
            values = np.abs(numpy_helper.to_array(tensor))
            count += bool(np.any((values > 0) & (values < min_positive)))
    return count


def audit_activations(
    model: onnx.ModelProto,
    data: np.ndarray,
    *,
    margin: float = DEFAULT_MARGIN,
    max_images: int = MAX_AUDIT_IMAGES,
) -> RangeAudit:
    """Nodes of ``model`` (FP32, nodes uniquely named) whose values exceed ``FP16_MAX / margin``.

    ``data``: float32 ``[N, *input_shape[1:]]`` for the model's single input, fed one at a time with
    batch 1; at most ``max_images`` of them, spread evenly. Runs onnxruntime (CPU EP, optimizations
    disabled so every tensor is the graph's own); its errors propagate.
    """
    samples = spread(data, max_images)
    measured = tensor_stats(model, samples)
    threshold = FP16_MAX / margin
    kept: list[NodeValue] = []
    largest: NodeValue | None = None
    for node in model.graph.node:
        peak = _node_peak(node, measured)
        if peak is None:
            continue
        if largest is None or peak.max_abs > largest.max_abs:
            largest = peak
        if peak.max_abs > threshold:
            kept.append(peak)
            log.info("fp16 range: %s (%s) stays float: %s", peak.node, peak.op, peak.why)
    return RangeAudit(len(samples), len(measured.tensors), margin, kept, largest, measured.untyped)


def spread(data: np.ndarray, count: int) -> np.ndarray:
    """At most ``count`` rows of ``data``, evenly spaced over it (first and last included)."""
    if len(data) <= count:
        return data
    return data[np.linspace(0, len(data) - 1, count).round().astype(int)]


def tensor_stats(model: onnx.ModelProto, samples: np.ndarray) -> Measured:
    """Max ``|value|`` and size of the graph input and every float node output over ``samples``, and
    the sums the normalisations form over them.

    Node outputs shape inference gave no type are skipped and counted (a graph output needs one).
    Outputs are fetched in chunks of :data:`RUN_BUDGET_BYTES`.
    """
    import onnxruntime as ort

    inferred = onnx.shape_inference.infer_shapes(model)
    known = {v.name: v.type.tensor_type for v in _value_infos(inferred.graph)}
    initializers = {t.name for t in model.graph.initializer}
    outputs = [o for n in model.graph.node for o in n.output if o and o not in initializers]
    floats = [o for o in outputs if o in known and known[o].elem_type == TensorProto.FLOAT]
    untyped = sum(1 for o in outputs if o not in known or not known[o].elem_type)
    per_image = int(np.prod(samples.shape[1:]))
    sizes = {o: _elements(known[o], per_image) for o in floats}

    input_name = next(i.name for i in model.graph.input if i.name not in initializers)
    stats = {input_name: TensorStats(float(np.max(np.abs(samples))), per_image)}
    norms: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        if node.op_type in _NORMALISED_AXES and node.input and node.input[0]:
            norms.setdefault(node.input[0], []).append(node)
    sums: dict[str, tuple[float, str]] = {}
    for sample in samples:
        _add_norm_sums(sums, norms.get(input_name, []), sample[None])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    for chunk in _chunks(floats, sizes, RUN_BUDGET_BYTES // 4):
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        del probe.graph.output[:]
        probe.graph.output.extend(helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in chunk)
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        peaks = dict.fromkeys(chunk, 0.0)
        for sample in samples:
            for name, value in zip(chunk, session.run(chunk, {input_name: sample[None]}), strict=True):
                peaks[name] = max(peaks[name], float(np.max(np.abs(value), initial=0.0)))
                sizes[name] = int(value.size)
                _add_norm_sums(sums, norms.get(name, []), value)
        stats.update({o: TensorStats(peaks[o], sizes[o]) for o in chunk})
    return Measured(stats, sums, untyped)


def _add_norm_sums(
    sums: dict[str, tuple[float, str]], nodes: list[onnx.NodeProto], value: np.ndarray
) -> None:
    """Raise ``sums[node]`` to this ``value``'s sum where it is larger."""
    for node in nodes:
        total, what = norm_sum(node, value)
        if node.name not in sums or total > sums[node.name][0]:
            sums[node.name] = (total, f"{what} of input {node.input[0]!r} reaches {total:.4g}")


def norm_sum(node: onnx.NodeProto, value: np.ndarray) -> tuple[float, str]:
    """The largest sum of squares (of ``|x|`` for LpNormalization ``p=1``) that normalisation ``node``
    forms over the normalised axes of ``value``, its input (in float64), and that sum in words."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "GroupNormalization":
        value = value.reshape(value.shape[0], attrs["num_groups"], -1)
    axes = _NORMALISED_AXES[node.op_type](attrs, value.ndim)
    power = attrs.get("p", 2)  # LpNormalization's p (1 or 2); the others square
    total = np.sum(np.abs(value.astype(np.float64)) ** power, axis=axes)
    count = int(np.prod([value.shape[a] for a in axes]))
    if node.op_type == "GroupNormalization":
        over = f"each of {value.shape[1]} groups"
    else:
        over = f"axis {axes[0]}" if len(axes) == 1 else f"axes {', '.join(map(str, axes))}"
    what = "squares" if power == 2 else "absolute values"
    return float(np.max(total, initial=0.0)), f"sum of {what} over {over} ({count} values)"


def _node_peak(node: onnx.NodeProto, measured: Measured) -> NodeValue | None:
    """The largest of a node's float inputs, outputs and hidden accumulators, or None if it has none."""
    stats = measured.tensors
    found: list[tuple[float, str]] = []
    found += [
        (stats[o].max_abs, f"output {o!r} reaches {stats[o].max_abs:.4g}") for o in node.output if o in stats
    ]
    found += [
        (stats[i].max_abs, f"input {i!r} reaches {stats[i].max_abs:.4g}") for i in node.input if i in stats
    ]
    first_in = stats.get(node.input[0]) if node.input else None
    first_out = stats.get(node.output[0]) if node.output else None
    if node.op_type in _MEAN_OPS and first_in and first_out:
        count = _pooled_count(node, first_in, first_out)
        total = first_out.max_abs * count
        found.append((total, f"sum of {count} values behind the mean reaches {total:.4g}"))
    elif node.op_type == "ReduceL2" and first_in and first_out:
        total = first_out.max_abs**2  # exactly the largest sum of squares
        over = (
            f"the reduced axes ({_pooled_count(node, first_in, first_out)} values) of input {node.input[0]!r}"
        )
        found.append((total, f"sum of squares over {over} reaches {total:.4g}"))
    elif node.name in measured.norm_sums:
        found.append(measured.norm_sums[node.name])
    if not found:
        return None
    value, why = max(found)
    return NodeValue(node.name, node.op_type, value, why)


def _pooled_count(node: onnx.NodeProto, inp: TensorStats, out: TensorStats) -> int:
    """Values summed per output element: the kernel for AveragePool, else input size / output size."""
    if node.op_type == "AveragePool":
        kernel = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "kernel_shape")
        return int(np.prod(kernel))
    return max(1, inp.size // max(1, out.size))


def _value_infos(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    return [*graph.input, *graph.value_info, *graph.output]


def _elements(tensor_type: onnx.TypeProto.Tensor, fallback: int) -> int:
    """Static element count, or ``fallback`` (the input's size) when a dimension is unknown."""
    dims = [d.dim_value for d in tensor_type.shape.dim]
    return int(np.prod(dims)) if dims and all(d > 0 for d in dims) else fallback


def _chunks(names: list[str], sizes: dict[str, int], budget: int) -> list[list[str]]:
    """Consecutive groups of ``names`` whose summed sizes stay within ``budget`` elements."""
    chunks: list[list[str]] = []
    current: list[str] = []
    total = 0
    for name in names:
        if current and total + sizes[name] > budget:
            chunks.append(current)
            current, total = [], 0
        current.append(name)
        total += sizes[name]
    return [*chunks, current] if current else chunks
