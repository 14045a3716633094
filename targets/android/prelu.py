"""Graph rewrites for the TFLite INT8 branch only (the ORT branch keeps the model as it is).

**PReLU rewrite** (:func:`rewrite_prelu`). LiteRT's XNNPACK delegate takes PRELU (and a standalone
quantized RELU, ABS, NEG, MAXIMUM or MINIMUM) in float only, so a full-INT8 PReLU net splits into one
partition per PReLU and runs slower than float (DESIGN §5 pitfalls 17, 19). Each ``PRelu(x, a)``
becomes one of two forms, both exact (equal to PReLU for every ``x`` up to float rounding; SFace in
onnxruntime FP32: max abs diff 3e-6, cosine >= 0.9999999):

* ``add``, when every slope is a known constant <= 1 (2 ops)::

      x + Relu(a' * x)                 a' = a - 1 <= 0: 0 for x >= 0, (a - 1)·x for x < 0

* ``sub``, otherwise (3 ops)::

      x - a' * Relu(-x)                -x is Mul(x, -1), so the Relu fuses into that MUL

``a' * x`` is a 1x1 depthwise Conv (one weight per channel, group = C) when ``x`` is NCHW and the slope
per channel ([C, 1, 1]): TFLite then quantizes ``a'`` per channel, where a MUL by a constant gets one
scale for all channels; otherwise a Mul. The converter fuses each Relu into the op before it.
``x + Relu(a' * x)`` alone is not exact for a slope above 1 (SFace's reach 1.12: FP32 cosine 0.9977),
hence ``sub`` there; MAXIMUM/MINIMUM forms are exact but not delegated in INT8. SFace, host XNNPACK,
1 thread, INT8/FP32 .tflite: ``add`` with the depthwise Conv 0.52-0.55x, with a Mul 0.59x, ``sub``
everywhere 0.69x; the 27 convs alone (PReLU dropped) 0.35x; and PRELU simply left in float
(DEQUANTIZE -> PRELU -> QUANTIZE, all inside the one XNNPACK partition) 0.48x: on XNNPACK that is
faster, so the rewrite serves accelerators that must run every op in INT8. onnx2tf 1.29.24 turns the
Add's NHWC result to NCHW when C != H (its Add "rescue guard" compares it with the ONNX shape), so a
depthwise conv after an ``add`` comes out as a grouped CONV_2D: same numbers, as fast on XNNPACK.

**Channel equalization** (:func:`equalize`): fold BatchNorms into Convs, then rescale the channels
around each PReLU so per-tensor INT8 activations serve every channel (SFace: mean cosine 0.9927 ->
0.9952 with PRELU in float, 0.9918 -> 0.9945 with the rewrite).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from packager.errors import ModelError, first_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreluRewrite:
    """What :func:`rewrite_prelu` did to one model."""

    path: Path
    """The rewritten .onnx."""
    nodes: int
    """PRelu nodes rewritten (0: the file is a plain copy)."""
    forms: dict[str, int]
    """Nodes per form, e.g. ``{"add/depthwise": 25, "sub/depthwise": 2}`` (see the module docstring)."""
    slope_min: float | None
    """Smallest and largest constant slope over all nodes (None: no constant slope)."""
    slope_max: float | None


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and ``Constant`` node outputs of ``graph``, by tensor name."""
    found = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a for a in node.attribute if a.name == "value"), None)
            if value is not None:
                found[node.output[0]] = numpy_helper.to_array(value.t)
    return found


class _Names:
    """Fresh tensor/node names that collide with nothing already in the graph."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.used = {t.name for t in graph.initializer} | {v.name for v in graph.input}
        for node in graph.node:
            self.used.update(node.output)
            self.used.add(node.name)

    def __call__(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name


def _const(graph: onnx.GraphProto, names: _Names, base: str, value: np.ndarray) -> str:
    name = names(base)
    graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
    return name


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Rank of every tensor onnx shape inference can tell, by name."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    ranks = {}
    for info in [*graph.value_info, *graph.input, *graph.output]:
        if info.type.tensor_type.HasField("shape"):
            ranks[info.name] = len(info.type.tensor_type.shape.dim)
    return ranks


def _per_channel(slope: np.ndarray | None, rank: int | None) -> bool:
    """True when ``slope`` holds one value per channel of an NCHW ``x``: [C, 1, 1] or [1, C, 1, 1]."""
    if slope is None or rank != 4:
        return False
    shape = slope.shape[1:] if slope.ndim == 4 and slope.shape[0] == 1 else slope.shape
    return len(shape) == 3 and shape[1:] == (1, 1)


def _rewrite_node(
    graph: onnx.GraphProto, node: onnx.NodeProto, slope: np.ndarray | None, rank: int | None, names: _Names
) -> tuple[str, list[onnx.NodeProto]]:
    """The nodes replacing one PRelu (the last writes the PRelu's output name), and the form's name."""
    x, out = node.input[0], node.output[0]
    base = node.name or out
    nodes: list[onnx.NodeProto] = []
    depthwise = _per_channel(slope, rank)

    def scale(value: str) -> str:
        """``a' * value`` as a 1x1 depthwise Conv or a Mul."""
        scaled = names(f"{base}/scale")
        if depthwise:
            weight = (slope - 1.0).reshape(-1, 1, 1, 1)
            w = _const(graph, names, f"{base}/slope_minus_1", weight)
            nodes.append(
                helper.make_node(
                    "Conv", [value, w], [scaled], name=scaled, kernel_shape=[1, 1], group=len(weight)
                )
            )
        elif slope is not None:
            w = _const(graph, names, f"{base}/slope_minus_1", slope - 1.0)
            nodes.append(helper.make_node("Mul", [value, w], [scaled], name=scaled))
        else:  # a computed slope: a - 1 in the graph
            factor = names(f"{base}/slope_minus_1")
            one = _const(graph, names, f"{base}/one", np.array(1.0))
            nodes.append(helper.make_node("Sub", [node.input[1], one], [factor], name=factor))
            nodes.append(helper.make_node("Mul", [value, factor], [scaled], name=scaled))
        return scaled

    kind = "depthwise" if depthwise else "mul"
    relu = names(f"{base}/relu")
    if slope is not None and float(slope.max()) <= 1.0:
        nodes.append(helper.make_node("Relu", [scale(x)], [relu], name=relu))
        nodes.append(helper.make_node("Add", [x, relu], [out], name=names(f"{base}/add")))
        return f"add/{kind}", nodes
    neg = names(f"{base}/neg")
    minus_1 = _const(graph, names, f"{base}/minus_1", np.array(-1.0))
    nodes.append(helper.make_node("Mul", [x, minus_1], [neg], name=neg))
    nodes.append(helper.make_node("Relu", [neg], [relu], name=relu))
    nodes.append(helper.make_node("Sub", [x, scale(relu)], [out], name=names(f"{base}/sub")))
    return f"sub/{kind}", nodes


def _drop_unused_initializers(graph: onnx.GraphProto, candidates: set[str]) -> None:
    """Remove the initializers in ``candidates`` (old slopes) that no node or graph output reads."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name not in candidates or t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    inputs = [i for i in graph.input if i.name not in candidates or i.name in used]
    del graph.input[:]
    graph.input.extend(inputs)


def rewrite_prelu_model(
    model: onnx.ModelProto,
) -> tuple[onnx.ModelProto, dict[str, int], tuple[float, float] | None]:
    """A copy of ``model`` with every top-level ``PRelu`` replaced (see the module docstring).

    Shapes, dtypes and names of every other tensor are unchanged: the last node of each replacement
    writes the PRelu's output name, so consumers and graph outputs need no edit. Returns the model,
    the count of nodes rewritten per form, and (min, max) of their constant slopes (None without one).
    Raises :class:`ValueError` for a PRelu inside a subgraph (If/Loop bodies), which it does not reach.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    for node in graph.node:
        for attr in node.attribute:
            if any(n.op_type == "PRelu" for g in [attr.g, *attr.graphs] for n in g.node):
                raise ValueError(f"PRelu inside the subgraph of node {node.name!r} ({node.op_type})")
    constants = _constants(graph)
    ranks = _ranks(model)
    names = _Names(graph)
    forms: dict[str, int] = {}
    slopes: list[float] = []
    old: set[str] = set()
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type != "PRelu" or node.domain not in ("", "ai.onnx"):
            new_nodes.append(node)
            continue
        slope = constants.get(node.input[1])
        if slope is not None:
            slope = slope.astype(np.float64)
            slopes += [float(slope.min()), float(slope.max())]
        old.add(node.input[1])
        form, replacement = _rewrite_node(graph, node, slope, ranks.get(node.input[0]), names)
        forms[form] = forms.get(form, 0) + 1
        new_nodes.extend(replacement)
    del graph.node[:]
    graph.node.extend(new_nodes)
    _drop_unused_initializers(graph, old)
    return out, forms, (min(slopes), max(slopes)) if slopes else None


def rewrite_prelu(src: Path, dst: Path) -> PreluRewrite:
    """Write ``src`` with every PRelu rewritten to ``dst`` (.onnx, weights inline) and check it.

    Raises :class:`ModelError` when ``src`` cannot be loaded, holds a PRelu the rewrite cannot reach,
    or the result fails ``onnx.checker``.
    """
    try:
        rewritten, forms, span = rewrite_prelu_model(onnx.load(str(src)))
        onnx.checker.check_model(rewritten)
    except (ValueError, onnx.checker.ValidationError, OSError) as exc:
        raise ModelError(
            src,
            f"cannot rewrite its PRelu nodes for TFLite: {first_line(exc)}",
            "convert it for TFLite with PRelu kept in float, or export PRelu at the graph's top level",
        ) from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(rewritten, str(dst))
    count = sum(forms.values())
    log.info("rewrote %d PRelu nodes for TFLite (%s), slopes %s", count, forms, span)
    return PreluRewrite(
        path=dst,
        nodes=count,
        forms=forms,
        slope_min=span[0] if span else None,
        slope_max=span[1] if span else None,
    )


# --- channel equalization -----------------------------------------------------------------------


@dataclass(frozen=True)
class Equalization:
    """What :func:`equalize` did to one model."""

    path: Path
    folded_batchnorms: int
    """BatchNormalization nodes folded into the Conv before them."""
    pairs: int
    """``Conv -> PRelu -> Conv`` pairs whose channels were rescaled."""


def _initializer(graph: onnx.GraphProto, name: str) -> onnx.TensorProto | None:
    return next((t for t in graph.initializer if t.name == name), None)


def _set(graph: onnx.GraphProto, name: str, value: np.ndarray) -> None:
    tensor = _initializer(graph, name)
    new = numpy_helper.from_array(value.astype(np.float32), name)
    if tensor is None:
        graph.initializer.append(new)
    else:
        tensor.CopyFrom(new)


def _users(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _attr(node: onnx.NodeProto, name: str, default: float) -> float:
    attr = next((a for a in node.attribute if a.name == name), None)
    return helper.get_attribute_value(attr) if attr is not None else default


def _fold_batchnorms(graph: onnx.GraphProto, names: _Names) -> int:
    """Fold each ``Conv -> BatchNormalization`` (constant weights, the Conv read by the BN only) into
    the Conv: ``W·k``, ``(b - mean)·k + beta`` with ``k = gamma / sqrt(var + eps)``. Exact in float."""
    consts = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    users = _users(graph)
    outputs = {o.name for o in graph.output}
    producer = {out: node for node in graph.node for out in node.output}
    folded = []
    for bn in graph.node:
        conv = producer.get(bn.input[0]) if bn.op_type == "BatchNormalization" else None
        if conv is None or conv.op_type != "Conv":
            continue
        params = [consts.get(name) for name in bn.input[1:5]]
        weight = consts.get(conv.input[1])
        if weight is None or any(p is None for p in params) or len(users[bn.input[0]]) != 1:
            continue
        if bn.input[0] in outputs or len(users[conv.input[1]]) != 1:
            continue
        gamma, beta, mean, var = params
        k = gamma / np.sqrt(var + float(_attr(bn, "epsilon", 1e-5)))
        bias = consts.get(conv.input[2]) if len(conv.input) > 2 else np.zeros(weight.shape[0])
        if bias is None or (len(conv.input) > 2 and len(users[conv.input[2]]) != 1):
            continue
        _set(graph, conv.input[1], weight * k.reshape(-1, *[1] * (weight.ndim - 1)))
        if len(conv.input) < 3:
            conv.input.append(names(f"{conv.name or conv.output[0]}/bias"))
        _set(graph, conv.input[2], (bias - mean) * k + beta)
        conv.output[0] = bn.output[0]
        folded.append(bn)
    for bn in folded:
        graph.node.remove(bn)
    _drop_unused_initializers(graph, {name for bn in folded for name in bn.input[1:]})
    return len(folded)


def _pairs(graph: onnx.GraphProto) -> list[tuple[onnx.NodeProto, onnx.NodeProto]]:
    """``(conv_a, conv_b)`` for each ``Conv -> PRelu -> Conv`` chain whose channels can be rescaled:
    each tensor read by the next node only, constant weights used once, ``conv_b`` plain or depthwise."""
    consts = {t.name for t in graph.initializer}
    users = _users(graph)
    outputs = {o.name for o in graph.output}
    producer = {out: node for node in graph.node for out in node.output}
    found = []
    for prelu in graph.node:
        conv_a = producer.get(prelu.input[0]) if prelu.op_type == "PRelu" else None
        readers = users.get(prelu.output[0], [])
        if conv_a is None or conv_a.op_type != "Conv" or len(readers) != 1:
            continue
        conv_b = readers[0]
        if conv_b.op_type != "Conv" or conv_b.input[0] != prelu.output[0]:
            continue
        if {prelu.input[0], prelu.output[0]} & outputs or len(users[prelu.input[0]]) != 1:
            continue
        params = [*conv_a.input[1:], conv_b.input[1]]
        if any(p not in consts or len(users[p]) != 1 for p in params) or len(conv_a.input) < 3:
            continue
        found.append((conv_a, conv_b))
    return found


def _channel_peaks(model: onnx.ModelProto, tensors: list[str], calibration: np.ndarray) -> list[np.ndarray]:
    """Per-channel max |value| of each of ``tensors`` [N, C, ...] over the calibration samples."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in tensors)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    peaks = [np.zeros(0)] * len(tensors)
    for sample in calibration:
        for i, value in enumerate(session.run(None, {name: sample[None].astype(np.float32)})):
            channels = np.abs(value[0]).reshape(value.shape[1], -1).max(axis=1)
            peaks[i] = channels if peaks[i].size == 0 else np.maximum(peaks[i], channels)
    return peaks


def equalize_model(model: onnx.ModelProto, calibration: np.ndarray) -> tuple[onnx.ModelProto, int, int]:
    """Fold BatchNorms into Convs, then rescale the channels of every ``Conv -> PRelu -> Conv`` pair so
    their activation ranges match (cross-layer equalization; Nagel et al. 2019, "Data-Free
    Quantization"). Exact in float: ``PRelu(s·x) = s·PRelu(x)`` for ``s > 0`` per channel, so
    ``conv_a``'s output channel c (weights and bias) is multiplied by ``s_c`` and ``conv_b``'s input
    channel c divided by it. Per-tensor INT8 activations then spend their 256 levels on every
    channel, not on the widest. With ``R_c`` the channel's peak on ``calibration`` (model inputs,
    [N, ...] float32): ``s_c = max(R) / R_c`` before a depthwise ``conv_b``, whose per-channel INT8
    weights absorb any ``1 / s_c``; ``s_c = sqrt(max(R) / R_c)`` before a plain one, whose weights of
    one output channel share a scale (half the activation gain, half the weight cost). Returns the
    model, the BatchNorms folded and the pairs rescaled.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    folded = _fold_batchnorms(graph, _Names(graph))
    pairs = _pairs(graph)
    if not pairs:
        return out, folded, 0
    peaks = _channel_peaks(out, [a.output[0] for a, _ in pairs], calibration)
    consts = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    for (conv_a, conv_b), peak in zip(pairs, peaks, strict=True):
        peak = np.maximum(peak, peak.max() * 1e-3 + 1e-12)
        w_a, bias_a, w_b = (consts[name] for name in (conv_a.input[1], conv_a.input[2], conv_b.input[1]))
        depthwise = int(_attr(conv_b, "group", 1)) == len(peak) > 1 and w_b.shape[1] == 1
        s = peak.max() / peak if depthwise else np.sqrt(peak.max() / peak)
        column = s.reshape(-1, 1, 1, 1) if depthwise else s.reshape(1, -1, *[1] * (w_b.ndim - 2))
        # A conv is conv_b of one pair and conv_a of the next: keep consts current.
        consts[conv_a.input[1]] = w_a * s.reshape(-1, *[1] * (w_a.ndim - 1))
        consts[conv_a.input[2]] = bias_a * s
        consts[conv_b.input[1]] = w_b / column
    for conv_a, conv_b in pairs:
        for name in (conv_a.input[1], conv_a.input[2], conv_b.input[1]):
            _set(graph, name, consts[name])
    return out, folded, len(pairs)


def equalize(src: Path, dst: Path, calibration: np.ndarray) -> Equalization:
    """:func:`equalize_model` from ``src`` to ``dst``. ``calibration``: the model's input samples
    [N, C, H, W] float32. Raises :class:`ModelError` when the result fails ``onnx.checker``."""
    model, folded, pairs = equalize_model(onnx.load(str(src)), calibration)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelError(
            src, f"channel equalization broke the graph: {first_line(exc)}", "report it"
        ) from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    log.info("folded %d BatchNorms, equalized %d Conv-PRelu-Conv pairs", folded, pairs)
    return Equalization(path=dst, folded_batchnorms=folded, pairs=pairs)
