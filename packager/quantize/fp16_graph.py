"""Graph surgery around onnxconverter-common 1.16's ``convert_float_to_float16`` (``keep_io_types``).

Edits before conversion make a graph the converter handles; repairs after it fix what it writes
wrong around float nodes and graph outputs. :mod:`packager.quantize.fp16` says in which order they
run; each function says why.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto

from packager import cleanup

# --- edits before conversion -------------------------------------------------------------------


def name_nodes(graph: onnx.GraphProto) -> None:
    """Give unnamed or duplicate-named nodes unique names: the block list matches by name, and an
    empty name in it would match every unnamed node."""
    seen: set[str] = set()
    for index, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
            while node.name in seen:
                node.name += "_"
        seen.add(node.name)


def separate_read_outputs(model: onnx.ModelProto) -> list[str]:
    """Give a graph output that nodes also read its own ``Identity``; returns those outputs.

    ``keep_io_types`` renames the producer's output and makes the graph output a ``Cast`` to float
    of it, but leaves the other readers on the output's name: an FP16 reader (a Relu) then gets a
    float tensor and onnxruntime refuses the model ("Type (tensor(float16)) of output arg (re) of
    node (Relu_6) does not match expected type (tensor(float))"). With the ``Identity`` (the form
    :func:`packager.cleanup.separate_shared_outputs` gives the prepared reference, redone here as
    onnxruntime's folding may remove it), the readers read the internal tensor, which is FP16.
    """
    return cleanup.separate_shared_outputs(model)


def float_output_casts(graph: onnx.GraphProto) -> list[str]:
    """``Cast(to=FLOAT)`` nodes that make a graph output: they stay float casts (block list).

    Made ``Cast(to=FLOAT16)``, the converter's own output Cast to float would follow it, and its
    ``remove_unnecessary_cast_node`` removes such a pair only between two nodes: before a graph
    output it raises "The downstream node of the second cast node should be graph output". Kept
    float, the Cast already makes the float32 output ``keep_io_types`` wants.
    """
    outputs = {o.name for o in graph.output}
    return sorted(n.name for n in graph.node if cast_to(n) == TensorProto.FLOAT and n.output[0] in outputs)


def retarget_float_casts(graph: onnx.GraphProto, kept: set[str]) -> list[str]:
    """``Cast(to=FLOAT)`` -> ``Cast(to=FLOAT16)`` outside the float nodes; returns their names."""
    names = []
    for node in graph.node:
        if cast_to(node) == TensorProto.FLOAT and node.name not in kept:
            next(a for a in node.attribute if a.name == "to").i = TensorProto.FLOAT16
            names.append(node.name)
    return names


def private_initializers(graph: onnx.GraphProto, kept: set[str]) -> None:
    """Give float nodes their own copy of an initializer they share with FP16 nodes.

    The converter leaves every input of a blocked node in FP32 (``process_initializers``), so a
    shared one (onnxruntime's ConstantSharing makes many) would reach the FP16 node as float.
    """
    by_name = {t.name: t for t in graph.initializer}
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in set(node.input):
            if name in by_name:
                users.setdefault(name, []).append(node)
    for name, nodes in users.items():
        if by_name[name].data_type != TensorProto.FLOAT or len({n.name in kept for n in nodes}) < 2:
            continue
        copy = onnx.TensorProto()
        copy.CopyFrom(by_name[name])
        copy.name = f"{name}_fp32"
        graph.initializer.append(copy)
        for node in nodes:
            if node.name in kept:
                node.input[:] = [copy.name if i == name else i for i in node.input]


# --- repairs after conversion ------------------------------------------------------------------


def bypass_cast_pairs(graph: onnx.GraphProto) -> None:
    """Feed ``Cast(to=FLOAT)`` of ``Cast(to=FLOAT16)`` of a float tensor from that tensor directly.

    The converter puts such a pair between two float nodes; its ``remove_unnecessary_cast_node``
    only removes pairs with one consumer (1.16 compares the multi-consumer case against the wrong
    constants). Through FP16, a value beyond 65504 between two float nodes would become inf.
    """
    types = elem_types(graph)
    producers = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        first = producers.get(node.input[0]) if cast_to(node) == TensorProto.FLOAT else None
        if first is not None and cast_to(first) == TensorProto.FLOAT16:
            source = first.input[0]
            if type_of(source, producers, types) == TensorProto.FLOAT:
                node.input[0] = source  # now a float -> float Cast, which onnxruntime elides
    _drop_unread_casts(graph)


def restore_float_outputs(graph: onnx.GraphProto, float_outputs: set[str]) -> None:
    """Keep float32 graph outputs float32 when a float node produces them.

    The converter's ``insert_cast16_after_node`` makes the node's output a Cast to FLOAT16 and
    retypes the graph output to FLOAT16, after which ``keep_io_types`` no longer sees a float output
    to preserve: make that Cast one to FLOAT again (a no-op when its input is float).
    """
    producers = {o: n for n in graph.node for o in n.output}
    for output in graph.output:
        producer = producers.get(output.name)
        if output.name in float_outputs and producer is not None and cast_to(producer) is not None:
            next(a for a in producer.attribute if a.name == "to").i = TensorProto.FLOAT
            output.type.tensor_type.elem_type = TensorProto.FLOAT


def merge_float_casts(graph: onnx.GraphProto) -> None:
    """Read ``Cast(to=FLOAT)`` of ``Cast(to=FLOAT)`` from the first Cast's input (the same value).

    A float Cast before a graph output (:func:`float_output_casts`) gets the converter's Cast to
    float before it and its Cast after it: three Casts where one does.
    """
    producers = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        first = producers.get(node.input[0]) if cast_to(node) == TensorProto.FLOAT else None
        while first is not None and cast_to(first) == TensorProto.FLOAT:
            node.input[0] = first.input[0]
            first = producers.get(node.input[0])
    _drop_unread_casts(graph)


def _drop_unread_casts(graph: onnx.GraphProto) -> None:
    """Remove Casts whose output nothing reads (repeated: a removed Cast may leave its input unread)."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        unread = [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in used]
        if not unread:
            return
        for node in unread:
            graph.node.remove(node)


# --- small helpers -----------------------------------------------------------------------------


def cast_to(node: onnx.NodeProto) -> int | None:
    """A Cast's ``to`` element type; None for other nodes."""
    if node.op_type != "Cast":
        return None
    return next((a.i for a in node.attribute if a.name == "to"), None)


def is_float(value: onnx.ValueInfoProto) -> bool:
    return value.type.tensor_type.elem_type == TensorProto.FLOAT


def elem_types(graph: onnx.GraphProto) -> dict[str, int]:
    """Element type by tensor name, from initializers and the graph's value infos."""
    types = {t.name: t.data_type for t in graph.initializer}
    types.update(
        {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]}
    )
    return types


def type_of(name: str, producers: dict[str, onnx.NodeProto], types: dict[str, int]) -> int | None:
    """A tensor's element type: a Cast's ``to`` when a Cast makes it (value_info can be stale), else
    the graph's value_info."""
    producer = producers.get(name)
    to = cast_to(producer) if producer is not None else None
    return to if to is not None else types.get(name)
