"""Load, check and prepare an ONNX model; the FP32 reference every variant is measured against.

Preparation fixes what makes mobile runtimes and quantizers stumble (DESIGN §5 items 7, 12, 14):
initializers listed as graph inputs, a dynamic batch dim, an opset too old for per-channel QDQ.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from packager.config import InputSpec
from packager.errors import ModelError
from packager.results import IOInfo

log = logging.getLogger(__name__)

MIN_QDQ_OPSET = 13
"""Per-channel DequantizeLinear (``axis``) needs opset 13."""

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}


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
    initializers_as_inputs: int
    dynamic_dims: list[str] = field(default_factory=list)


def load_model(path: Path, *, check: bool = True) -> onnx.ModelProto:
    """Load with external data, refusing anything that is not a usable ONNX file with a clear reason."""
    if not path.exists():
        raise ModelError(path, "model file not found", "check [models].source in packager.toml")
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
            first = str(exc).strip().splitlines()[0]
            raise ModelError(
                path, f"onnx.checker rejects the model: {first}", "re-export with a current exporter"
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


def inspect_model(model: onnx.ModelProto, path: Path) -> GraphReport:
    inputs = [io_info(v) for v in graph_inputs(model)]
    outputs = [io_info(v) for v in model.graph.output]
    dynamic = [
        f"{io.name}[{i}]={d}" for io in inputs + outputs for i, d in enumerate(io.shape) if isinstance(d, str)
    ]
    hist = collections.Counter(n.op_type for n in model.graph.node)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    return GraphReport(
        path=str(path),
        size_bytes=path.stat().st_size if path.exists() else model.ByteSize(),
        ir_version=model.ir_version,
        opset=opset_of(model),
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=inputs,
        outputs=outputs,
        op_histogram=dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
        parameters=params,
        initializers_as_inputs=len(model.graph.input) - len(graph_inputs(model)),
        dynamic_dims=dynamic,
    )


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
    expected = _expected_shape(spec)
    for axis, (got, want) in enumerate(zip(info.shape[1:], expected[1:], strict=True), start=1):
        if isinstance(got, int) and got > 0 and got != want:
            raise ModelError(
                path,
                f"input {info.name!r} has shape {info.shape} but the config implies {expected} "
                f"(size {spec.size}, {spec.channels}, {spec.layout}); axis {axis} differs",
                "fix [models].input size/channels/layout to match the model",
            )
    return value


def _expected_shape(spec: InputSpec) -> list[int]:
    c, h, w = spec.num_channels, spec.height, spec.width
    return [1, c, h, w] if spec.layout == "NCHW" else [1, h, w, c]


def drop_initializer_inputs(model: onnx.ModelProto) -> int:
    """Remove graph inputs that are initializers; otherwise ORT cannot fold constants (DESIGN §5.14)."""
    inits = {i.name for i in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    removed = len(model.graph.input) - len(keep)
    if removed:
        del model.graph.input[:]
        model.graph.input.extend(keep)
    return removed


def fix_input_shape(model: onnx.ModelProto, name: str, shape: list[int]) -> list[str]:
    """Pin symbolic dims of the image input; NNAPI and CoreML EPs reject dynamic shapes (DESIGN §5.7)."""
    from onnxruntime.tools.onnx_model_utils import make_input_shape_fixed

    before = io_info(next(i for i in model.graph.input if i.name == name)).shape
    if all(isinstance(d, int) and d > 0 for d in before):
        return []
    make_input_shape_fixed(model.graph, name, shape)
    # Outputs keep stale symbolic dims unless re-inferred from scratch.
    for out in model.graph.output:
        for dim in out.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.Clear()
    del model.graph.value_info[:]
    return [
        f"{name}[{i}]: {d} -> {shape[i]}" for i, d in enumerate(before) if not isinstance(d, int) or d <= 0
    ]


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
            path, f"shape inference failed ({exc})", "check the model with `packager check`"
        ) from None
