"""Load, check and prepare an ONNX model; the FP32 reference every variant is measured against.

Preparation fixes what makes mobile runtimes and quantizers stumble (DESIGN §5 items 7, 12, 14):
initializers listed as graph inputs, dynamic or placeholder input dims (batch -> 1, height/width ->
the configured size), an opset too old for per-channel QDQ. Running the model to prove a fix holds is
``packager.prepare``'s job; this module only reads and rewrites the graph.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from packager.config import InputSpec
from packager.errors import ModelError, first_line
from packager.results import IOInfo

log = logging.getLogger(__name__)

MIN_QDQ_OPSET = 13
"""Per-channel DequantizeLinear (``axis``) needs opset 13."""

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
_ROLES = {"NCHW": ("batch", "channels", "height", "width"), "NHWC": ("batch", "height", "width", "channels")}
"""What each axis of a 4-D image input means, per layout."""
_CONFIG_FIELD = {
    "channels": "[models].input.channels",
    "height": "[models].input.size[0]",
    "width": "[models].input.size[1]",
}
"""Where a dim's value comes from, shown when `packager check` has no config."""


@dataclass(frozen=True)
class InputFix:
    """One input dim that preparation pins, and why; `packager check` lists these before a build.

    ``from_`` is the model's value: a number (a static dim, possibly an export placeholder), a symbol
    such as ``"N"``, or ``"?"`` for an unnamed dynamic dim. ``to`` is the value it gets; without a
    config it names the config field the value will come from (``"[models].input.size[0]"``).
    """

    input: str
    axis: int
    dim: str
    """batch | height | width | channels (from the configured or guessed layout)."""
    from_: int | str
    to: int | str
    why: str

    def describe(self, arrow: str = "->") -> str:
        return f"{self.input}[{self.axis}] {self.dim} {self.from_} {arrow} {self.to}"


@dataclass(frozen=True)
class Note:
    """Something about the model a user should know before a build, and what fixes it.

    ``code`` is stable for CI to match on: ``initializers-as-inputs``, ``dynamic-dims`` or
    ``opset-below-13``. The text and JSON output of `packager check` both print these.
    """

    code: str
    message: str
    fix: str


@dataclass(frozen=True)
class GraphReport:
    path: str
    size_bytes: int
    ir_version: int
    opset: int
    producer: str
    inputs: list[IOInfo]
    outputs: list[IOInfo]
    op_histogram: dict[str, int]
    parameters: int
    """Elements of every constant tensor, = the two counts below (subgraphs included)."""
    parameters_in_initializers: int
    parameters_in_constant_nodes: int
    """Weights exporters such as paddle2onnx store as ``Constant`` nodes instead of initializers."""
    initializers_as_inputs: int
    dynamic_dims: list[str] = field(default_factory=list)
    input_fixes: list[InputFix] = field(default_factory=list)
    """What `packager build` pins on the image input: exact values with a config, else the fields used."""
    notes: list[Note] = field(default_factory=list)


def load_model(path: Path, *, check: bool = True) -> onnx.ModelProto:
    """Load with external data, refusing anything that is not a usable ONNX file with a clear reason."""
    if not path.exists():
        raise ModelError(
            path, "model file not found", "check the path (in a build: [models].source in packager.toml)"
        )
    if path.is_dir():
        raise ModelError(path, "is a folder, not an .onnx file", "point source at the .onnx file")
    head = path.read_bytes()[:64]
    if not head:
        raise ModelError(path, "file is empty", "re-export the model")
    if _looks_like_text(head):
        raise ModelError(
            path,
            "is a text file, not a binary ONNX protobuf (a Git LFS pointer or an HTML error page?)",
            "fetch the real model file (e.g. `git lfs pull`) or re-export it",
        )
    try:
        model = onnx.load(str(path), load_external_data=True)
    except DecodeError as exc:
        raise ModelError(
            path, f"not a valid ONNX protobuf ({exc})", "the file is truncated or corrupt: re-export"
        ) from None
    except (FileNotFoundError, OSError, onnx.checker.ValidationError) as exc:
        raise ModelError(
            path,
            f"external weight data is missing ({exc})",
            "copy the model's .data file(s) next to the .onnx file",
        ) from None
    if not model.graph.node:
        raise ModelError(path, "the graph has no nodes (truncated or not a model)", "re-export the model")
    if check:
        try:
            onnx.checker.check_model(model, full_check=False)
        except onnx.checker.ValidationError as exc:
            raise ModelError(
                path,
                f"onnx.checker rejects the model: {first_line(exc)}",
                "re-export with a current exporter",
            ) from None
    return model


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch.isspace() for ch in text)


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real inputs: graph inputs that are not also initializers (old exporters list weights as inputs)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def io_info(value: onnx.ValueInfoProto) -> IOInfo:
    tt = value.type.tensor_type
    dims: list[int | str] = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim
    ]
    return IOInfo(name=value.name, dtype=onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name, shape=dims)


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def inspect_model(model: onnx.ModelProto, path: Path, spec: InputSpec | None = None) -> GraphReport:
    """Facts about the model plus the input dims a build would fix.

    With ``spec`` the fixes carry exact values for the image input; whether the graph really runs at
    them is for ``packager.prepare.fix_image_input`` to prove (it runs the model).

    Raises:
        ModelError: with ``spec``, the image input cannot be fed as configured (see :func:`image_input`).
    """
    inputs = [io_info(v) for v in graph_inputs(model)]
    outputs = [io_info(v) for v in model.graph.output]
    dynamic = [
        f"{io.name}[{i}]={d}" for io in inputs + outputs for i, d in enumerate(io.shape) if isinstance(d, str)
    ]
    if spec is None:
        fixes = [fix for value in graph_inputs(model) for fix in plan_input_fixes(value, None)]
    else:
        fixes = plan_input_fixes(image_input(model, spec, path), spec)
    hist = collections.Counter(n.op_type for n in model.graph.node)
    in_inits, in_constants = _count_parameters(model.graph)
    as_inputs = len(model.graph.input) - len(graph_inputs(model))
    return GraphReport(
        path=str(path),
        size_bytes=path.stat().st_size if path.exists() else model.ByteSize(),
        ir_version=model.ir_version,
        opset=opset_of(model),
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=inputs,
        outputs=outputs,
        op_histogram=dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
        parameters=in_inits + in_constants,
        parameters_in_initializers=in_inits,
        parameters_in_constant_nodes=in_constants,
        initializers_as_inputs=as_inputs,
        dynamic_dims=dynamic,
        input_fixes=fixes,
        notes=_notes(as_inputs, dynamic, opset_of(model), model.ir_version, _shape_inference_error(model)),
    )


def _shape_inference_error(model: onnx.ModelProto) -> str | None:
    """What onnx's type and shape inference rejects (the build stops on it), else None."""
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:  # inference errors come from C++ as several exception types
        return first_line(exc)
    return None


def _notes(
    initializers_as_inputs: int,
    dynamic_dims: list[str],
    opset: int,
    ir_version: int = 0,
    inference_error: str | None = None,
) -> list[Note]:
    """The one place `packager check`'s notes are worded, for its text and its JSON alike."""
    from packager.cleanup import ORT_MAX_IR_VERSION

    notes = []
    if inference_error:
        fix = (
            "re-export the model (the node named is where its types or shapes disagree); build will refuse it"
        )
        notes.append(
            Note("shape-inference", f"onnx shape inference rejects the model: {inference_error}", fix)
        )
    if ir_version > ORT_MAX_IR_VERSION:
        message = f"IR version {ir_version} is newer than onnxruntime loads ({ORT_MAX_IR_VERSION})"
        notes.append(Note("ir-version", message, f"`packager build` sets it to {ORT_MAX_IR_VERSION}"))
    if initializers_as_inputs:
        message = f"{initializers_as_inputs} initializers are listed as graph inputs (blocks constant folding"
        fix = "`packager build` removes them from the inputs"
        notes.append(Note("initializers-as-inputs", f"{message} and FP16 conversion)", fix))
    if dynamic_dims:
        fix = "`packager build` pins the image input (see the input fixes) and re-infers output shapes"
        notes.append(Note("dynamic-dims", f"dynamic dims {', '.join(dynamic_dims)}", fix))
    if opset < MIN_QDQ_OPSET:
        message = f"opset {opset} < {MIN_QDQ_OPSET}: per-channel QDQ needs opset {MIN_QDQ_OPSET}"
        fix = f"`packager build` upgrades it to opset {MIN_QDQ_OPSET}"
        notes.append(Note("opset-below-13", message, fix))
    return notes


def _count_parameters(graph: onnx.GraphProto) -> tuple[int, int]:
    """Elements held in (initializers, ``Constant`` nodes) of ``graph`` and its If/Loop/Scan bodies.

    A sparse tensor counts its dense size, as the weight it stands for.
    """
    in_inits = sum(_size(t.dims) for t in [*graph.initializer, *graph.sparse_initializer])
    in_constants = 0
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            in_constants += sum(_constant_size(attr) for attr in node.attribute)
        for attr in node.attribute:
            for sub in [attr.g, *attr.graphs] if attr.type in (attr.GRAPH, attr.GRAPHS) else []:
                sub_inits, sub_constants = _count_parameters(sub)
                in_inits, in_constants = in_inits + sub_inits, in_constants + sub_constants
    return in_inits, in_constants


def _constant_size(attr: onnx.AttributeProto) -> int:
    """``value`` holds a tensor, ``value_floats``/``_ints``/``_strings`` a list, ``value_float``... one."""
    if attr.type == attr.TENSOR:
        return _size(attr.t.dims)
    if attr.type == attr.SPARSE_TENSOR:
        return _size(attr.sparse_tensor.dims)
    return len(attr.floats) + len(attr.ints) + len(attr.strings) if attr.type in _LISTS else 1


_LISTS = (onnx.AttributeProto.FLOATS, onnx.AttributeProto.INTS, onnx.AttributeProto.STRINGS)


def _size(dims: Sequence[int]) -> int:
    return int(np.prod(dims, dtype=np.int64))


def image_input(model: onnx.ModelProto, spec: InputSpec, path: Path) -> onnx.ValueInfoProto:
    """The one image input the preprocessing block describes; refuse shapes it cannot feed."""
    inputs = graph_inputs(model)
    if not inputs:
        raise ModelError(path, "the model has no inputs", "re-export the model with its image input")
    if spec.name is not None:
        chosen = [i for i in inputs if i.name == spec.name]
        if not chosen:
            names = ", ".join(i.name for i in inputs)
            raise ModelError(
                path, f"no input named {spec.name!r} (inputs: {names})", "fix [models].input.name"
            )
        value = chosen[0]
    elif len(inputs) > 1:
        names = ", ".join(i.name for i in inputs)
        raise ModelError(
            path,
            f"the model has {len(inputs)} inputs ({names}) but the config describes one preprocessing block",
            "packager feeds one image input per model: export the model with a single image input",
        )
    else:
        value = inputs[0]
    info = io_info(value)
    if value.type.tensor_type.elem_type not in _FLOAT_TYPES:
        raise ModelError(
            path,
            f"input {info.name!r} is {info.dtype}, but images are fed as float tensors",
            "use a model whose image input is float32 (or float16)",
        )
    if len(info.shape) != 4:
        raise ModelError(
            path, f"input {info.name!r} has shape {info.shape}, expected 4-D image", "check the model"
        )
    # Only a static channel count is refused up front: no conv weight takes another count. A static
    # height/width that differs from the config may be an export placeholder: prepare runs the graph
    # at the configured size to find out (packager.prepare.fix_image_input).
    expected = configured_shape(spec)
    axis = _ROLES[spec.layout].index("channels")
    got = info.shape[axis]
    if _is_static(got) and got != expected[axis]:
        raise ModelError(
            path,
            f"input {info.name!r} has shape {info.shape} but the config implies {expected} "
            f"({spec.channels}, {spec.layout}): the channels (axis {axis}) differ",
            "fix [models].input channels/layout to match the model",
        )
    return value


def configured_shape(spec: InputSpec) -> list[int]:
    """The tensor the app feeds: batch 1, ``size`` = [height, width], ``channels``, in ``layout``."""
    c, h, w = spec.num_channels, spec.height, spec.width
    return [1, c, h, w] if spec.layout == "NCHW" else [1, h, w, c]


def _is_static(dim: int | str) -> bool:
    # Exporters write -1 or 0 for "any size"; only a positive number pins the dim.
    return isinstance(dim, int) and dim > 0


def _guess_layout(shape: list[int | str]) -> str:
    """Without a config: NHWC only when the last dim, and not axis 1, looks like a channel count."""

    def channel_like(d: int | str) -> bool:
        return _is_static(d) and d in (1, 3, 4)

    return "NHWC" if channel_like(shape[3]) and not channel_like(shape[1]) else "NCHW"


def plan_input_fixes(value: onnx.ValueInfoProto, spec: InputSpec | None) -> list[InputFix]:
    """The dims of ``value`` that preparation changes to reach :func:`configured_shape`.

    Batch always becomes 1 (NNAPI/CoreML refuse dynamic shapes, DESIGN §5.7; a static batch other than
    1 is an export placeholder). Height/width/channels come from the config. Without ``spec`` only
    dynamic dims are listed (a static one stays unless a config says otherwise), the layout is guessed
    from a channel-like axis and ``to`` names the config field.
    """
    info = io_info(value)
    rank4 = len(info.shape) == 4
    layout = spec.layout if spec is not None else _guess_layout(info.shape) if rank4 else "NCHW"
    roles = _ROLES[layout] if rank4 else ("batch",)
    targets: list[int | str] = (
        list(configured_shape(spec)) if spec is not None else [1, *(_CONFIG_FIELD[r] for r in roles[1:])]
    )
    fixes = []
    for axis, (role, got, want) in enumerate(zip(roles, info.shape, targets, strict=False)):
        if got == want or (spec is None and role != "batch" and _is_static(got)):
            continue
        fixes.append(InputFix(info.name, axis, role, got, want, _why(role, got, want, spec)))
    return fixes


def _why(role: str, got: int | str, want: int | str, spec: InputSpec | None) -> str:
    if role == "batch":
        kind = f"static batch {got} looks like an export placeholder" if _is_static(got) else "dynamic batch"
        return f"{kind}; the app feeds one image and mobile EPs (NNAPI, CoreML) need static shapes"
    field_ = "[models].input.channels" if role == "channels" else "[models].input.size"
    configured = "" if spec is None else f" = {spec.channels if role == 'channels' else spec.size}"
    if not _is_static(got):
        return f"dynamic {role}; mobile EPs need static shapes, so it takes {field_}{configured}"
    return (
        f"static {role} {got} differs from {field_}{configured}: an export placeholder if the graph "
        f"runs at {want}, which prepare checks by running it with onnxruntime (else: an error)"
    )


def set_input_shape(model: onnx.ModelProto, name: str, shape: list[int] | list[int | str]) -> None:
    """Give input ``name`` these dims (a str is symbolic) and forget every shape derived from the old ones.

    Value infos and output shapes were inferred from the old dims (or are export placeholders): left in
    place they go stale, and ORT trusts declared shapes. :func:`infer_shapes` recomputes them.
    """
    value = next(i for i in model.graph.input if i.name == name)
    for dim, size in zip(value.type.tensor_type.shape.dim, shape, strict=True):
        dim.Clear()
        if isinstance(size, str):
            dim.dim_param = size
        else:
            dim.dim_value = size
    _forget_value_info(model.graph)
    for out in model.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")


def _forget_value_info(g: onnx.GraphProto) -> None:
    del g.value_info[:]
    for node in g.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                _forget_value_info(sub)


def upgrade_opset(model: onnx.ModelProto, target: int, path: Path) -> onnx.ModelProto:
    try:
        return onnx.version_converter.convert_version(model, target)
    except Exception as exc:  # the converter raises bare RuntimeErrors from C++
        raise ModelError(
            path,
            f"cannot upgrade opset {opset_of(model)} -> {target} ({exc})",
            "re-export the model at opset >= 13",
        ) from None


def infer_shapes(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=False, data_prop=True)
    except Exception as exc:  # inference errors come from C++ as several exception types
        raise ModelError(
            path,
            f"onnx shape inference rejects the model's types or shapes ({first_line(exc)})",
            "re-export the model with a current exporter (the node named above is where its types disagree)",
        ) from None
