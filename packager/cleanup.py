"""Clean-ups preparation applies to a source model: what exporters leave that makes runtimes,
quantizers and converters stumble, each exact (the model computes the same function after it).

Each function edits the model in place and returns what it changed, so preparation can list the
changes in the manifest.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

ORT_MAX_IR_VERSION = 11
"""Highest IR version onnxruntime 1.23 loads ("Unsupported model IR version: 12, max supported IR
version: 11"); onnx 1.19's ``helper.make_model`` writes 12."""

SHARED_OUTPUT_SUFFIX = "__internal"


def drop_initializer_inputs(model: onnx.ModelProto) -> int:
    """Remove graph inputs that are initializers; otherwise ORT cannot fold constants (DESIGN §5.14)."""
    inits = {i.name for i in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    removed = len(model.graph.input) - len(keep)
    if removed:
        del model.graph.input[:]
        model.graph.input.extend(keep)
    return removed


def _used_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name a node of ``graph`` or of its subgraphs (If/Loop bodies) reads."""
    used = {o.name for o in graph.output}
    for node in graph.node:
        used.update(node.input)
        for attr in node.attribute:
            for sub in [attr.g, *attr.graphs] if attr.type in (attr.GRAPH, attr.GRAPHS) else []:
                used |= _used_names(sub)
    return used


def drop_unused_initializers(model: onnx.ModelProto) -> list[str]:
    """Remove initializers no node reads (PyTorch exports keep BatchNorm's ``num_batches_tracked``).

    onnxruntime removes them itself at load, with one warning per initializer on every session.
    """
    used = _used_names(model.graph)
    unused = [t.name for t in model.graph.initializer if t.name not in used]
    if unused:
        keep = [t for t in model.graph.initializer if t.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
    return unused


def lower_ir_version(model: onnx.ModelProto, highest: int = ORT_MAX_IR_VERSION) -> int | None:
    """Set the IR version to ``highest`` when the model declares a newer one; returns the old version.

    The IR version is the file format's, not the operators' (those are the opset): a graph that uses
    no newer IR feature loads unchanged, and the equivalence check after preparation proves it does.
    """
    if model.ir_version <= highest:
        return None
    old = model.ir_version
    model.ir_version = highest
    return old


def upcast_fp16_weights(model: onnx.ModelProto) -> int:
    """Replace ``Cast(to=FLOAT)`` of an FP16 initializer by that initializer in FP32; returns how many.

    Exporters that save ``model.half()`` weights with Casts to float make a "FP32" reference whose
    weights are FP16: sizes and ratios to FP32 would then be wrong. FP16 -> FP32 is exact.
    """
    graph = model.graph
    fp16 = {t.name: t for t in graph.initializer if t.data_type == TensorProto.FLOAT16}
    outputs = {o.name for o in graph.output}
    done = []
    for node in graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None
        if to == TensorProto.FLOAT and node.input[0] in fp16 and node.output[0] not in outputs:
            array = numpy_helper.to_array(fp16[node.input[0]]).astype(np.float32)
            graph.initializer.append(numpy_helper.from_array(array, node.output[0]))
            done.append(node)
    for node in done:
        graph.node.remove(node)
    used = _used_names(graph)
    for name in {n.input[0] for n in done} - used:
        graph.initializer.remove(fp16[name])
    return len(done)


def separate_shared_outputs(model: onnx.ModelProto) -> list[str]:
    """Give each graph output that other nodes also read its own ``Identity``; returns their names.

    Quantizers and converters treat such a tensor as internal: ORT's QDQ quantizer folds a Relu that
    reads it into its quantization range, so the *output* comes back clipped at 0 (cosine 0.66 seen
    on an embedding read by a Relu), and onnxconverter-common retypes it to FP16. After this, the
    producer writes ``<name>__internal``, its readers read that, and ``Identity`` makes the output.
    """
    graph = model.graph
    outputs = {o.name for o in graph.output}
    readers = {name for node in graph.node for name in node.input}
    produced = {name for node in graph.node for name in node.output}
    shared = [o for o in graph.output if o.name in readers and o.name in produced]
    for out in shared:
        internal = f"{out.name}{SHARED_OUTPUT_SUFFIX}"
        for node in graph.node:
            node.output[:] = [internal if n == out.name else n for n in node.output]
            node.input[:] = [internal if n == out.name else n for n in node.input]
        graph.node.append(
            onnx.helper.make_node("Identity", [internal], [out.name], name=f"{out.name}_output")
        )
    assert outputs == {o.name for o in graph.output}
    return [o.name for o in shared]


def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Store the tensors of top-level ``Constant`` nodes (``value`` attribute) as initializers.

    Some exporters (paddle2onnx, older TF converters) keep weights in Constant nodes; ORT's dynamic
    quantizer then fails ("Expected w1 to be an initializer"). Exact: the same tensor under the same
    name. Returns how many nodes were replaced.
    """
    graph = model.graph
    moved = []
    for node in graph.node:
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            continue
        value = next((a for a in node.attribute if a.name == "value" and a.type == a.TENSOR), None)
        if value is None:
            continue
        tensor = onnx.TensorProto()
        tensor.CopyFrom(value.t)
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
        moved.append(node)
    for node in moved:
        graph.node.remove(node)
    return len(moved)
