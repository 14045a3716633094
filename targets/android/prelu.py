"""PReLU rewritten, for the TFLite branch only, into ops the XNNPACK delegate runs in INT8.

LiteRT's XNNPACK delegate takes PRELU (and a standalone quantized RELU, ABS, NEG, MAXIMUM or MINIMUM)
in float only, so a full-INT8 PReLU net splits into one delegate partition per PReLU and runs slower
than float (DESIGN §5 pitfalls 17, 19). Every ``PRelu(x, a)`` becomes

    x - (a - 1) * Relu(x * -1)        i.e.  Sub(x, Mul(Relu(Mul(x, -1)), a - 1))

three ops XNNPACK takes in INT8 once the converter fuses the Relu into the first MUL. It equals PReLU
for every slope (``x < 0``: ``x - (a - 1)·(-x) = a·x``; ``x >= 0``: ``x``) up to float rounding
(SFace, FP32 in onnxruntime: max abs diff 3e-6, cosine >= 0.9999997). Two shorter forms fail:
``x + Relu(x * (a - 1))`` adds ``(a - 1)·x`` to positive ``x`` when a slope is above 1 (SFace's reach
1.12: FP32 cosine 0.9977), and any form ending in ``Add`` meets onnx2tf 1.29.24's Add "rescue guard",
which compares the NHWC result with the NCHW ONNX shape, transposes it to NCHW whenever C != H, and so
turns the next depthwise conv into a grouped CONV_2D. The ORT branch keeps PRelu.
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


def _rewrite_node(
    graph: onnx.GraphProto, node: onnx.NodeProto, slope: np.ndarray | None, names: _Names
) -> list[onnx.NodeProto]:
    """The four nodes replacing one PRelu; the last writes the PRelu's output name."""
    x, out = node.input[0], node.output[0]
    base = node.name or out
    neg, relu, scaled = names(f"{base}/neg"), names(f"{base}/relu"), names(f"{base}/scale")
    minus_1 = _const(graph, names, f"{base}/minus_1", np.array(-1.0))
    nodes = [
        helper.make_node("Mul", [x, minus_1], [neg], name=neg),
        helper.make_node("Relu", [neg], [relu], name=relu),
    ]
    if slope is not None:
        factor = _const(graph, names, f"{base}/slope_minus_1", slope - 1.0)
    else:  # a computed slope: a - 1 in the graph
        factor = names(f"{base}/slope_minus_1")
        one = _const(graph, names, f"{base}/one", np.array(1.0))
        nodes.append(helper.make_node("Sub", [node.input[1], one], [factor], name=factor))
    nodes.append(helper.make_node("Mul", [relu, factor], [scaled], name=scaled))
    nodes.append(helper.make_node("Sub", [x, scaled], [out], name=names(f"{base}/sub")))
    return nodes


def _drop_unused_initializers(graph: onnx.GraphProto, candidates: set[str]) -> None:
    """Remove the initializers in ``candidates`` (old slopes) that no node or graph output reads."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name not in candidates or t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    inputs = [i for i in graph.input if i.name not in candidates or i.name in used]
    del graph.input[:]
    graph.input.extend(inputs)


def rewrite_prelu_model(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int, tuple[float, float] | None]:
    """A copy of ``model`` with every top-level ``PRelu`` replaced (see the module docstring).

    Shapes, dtypes and names of every other tensor are unchanged: the last node of each replacement
    writes the PRelu's output name, so consumers and graph outputs need no edit. Returns the model,
    the number of PRelu nodes rewritten and (min, max) of their constant slopes (None without one).
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
    names = _Names(graph)
    count, slopes, old = 0, [], set()
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
        new_nodes.extend(_rewrite_node(graph, node, slope, names))
        count += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    _drop_unused_initializers(graph, old)
    return out, count, (min(slopes), max(slopes)) if slopes else None


def rewrite_prelu(src: Path, dst: Path) -> PreluRewrite:
    """Write ``src`` with every PRelu rewritten to ``dst`` (.onnx, weights inline) and check it.

    Raises :class:`ModelError` when ``src`` cannot be loaded, holds a PRelu the rewrite cannot reach,
    or the result fails ``onnx.checker``.
    """
    try:
        rewritten, count, span = rewrite_prelu_model(onnx.load(str(src)))
        onnx.checker.check_model(rewritten)
    except (ValueError, onnx.checker.ValidationError, OSError) as exc:
        raise ModelError(
            src,
            f"cannot rewrite its PRelu nodes for TFLite: {first_line(exc)}",
            "convert it for TFLite with PRelu kept in float, or export PRelu at the graph's top level",
        ) from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(rewritten, str(dst))
    log.info("rewrote %d PRelu nodes for TFLite, slopes %s", count, span)
    return PreluRewrite(
        path=dst, nodes=count, slope_min=span[0] if span else None, slope_max=span[1] if span else None
    )
