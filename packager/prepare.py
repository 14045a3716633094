"""Turn the source model into the FP32 reference: cleaned, input pinned, opset >= 13, verified.

Every variant and every platform artifact starts from this file, so it is checked numerically
against the untouched source before anything else runs. The image input is pinned to the shape the
app feeds (batch 1, the configured size; DESIGN §5.7), and the model is *run* at that shape: that is
what tells a placeholder size (a fully convolutional graph runs at any size) from a size built into
the graph (a Reshape or Gemm sized for it), and it is the shape calibration and validation use.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from packager import cleanup, graph
from packager.config import InputSpec, ModelSpec
from packager.errors import ConfigError, ModelError, first_line
from packager.results import IOInfo, PreparedMeta

log = logging.getLogger(__name__)

EQUIVALENCE_MIN_COSINE = 0.99999
"""The prepared graph must compute the same function; anything below this is a converter bug."""


@dataclass(frozen=True)
class PreparedModel:
    """The written FP32 reference and what preparation did to the source to make it."""

    path: Path
    input: IOInfo
    output: IOInfo
    """The configured output (``[models].output.name``, else the first)."""
    outputs: list[IOInfo]
    """Every output, with shapes re-inferred at the pinned input shape."""
    opset_source: int
    opset: int
    changes: list[str]
    input_fixes: list[graph.InputFix]
    equivalence: dict[str, float]
    """Cosine of each output to the source's, both run at the pinned input shape on one sample."""

    @property
    def equivalence_cosine(self) -> float:
        """The worst output's cosine."""
        return min(self.equivalence.values())


def prepare_step(spec: ModelSpec, out: Path) -> dict[str, object]:
    """The ``prepare[model]`` step body: writes ``out/fp32.onnx`` and returns a :class:`PreparedMeta` dump."""
    prepared = prepare_reference(spec, out / "fp32.onnx")
    return PreparedMeta(
        input=prepared.input,
        output=prepared.output,
        outputs=prepared.outputs,
        opset_source=prepared.opset_source,
        opset=prepared.opset,
        changes=prepared.changes,
        equivalence_cosine=prepared.equivalence_cosine,
        equivalence=prepared.equivalence,
    ).model_dump(mode="json")


def prepare_reference(spec: ModelSpec, output: Path) -> PreparedModel:
    """Write the FP32 reference for ``spec`` to ``output`` and describe it.

    Raises:
        ModelError: the model cannot be loaded, fed as configured, run at the configured shape,
            upgraded, or the prepared model does not compute what the source computes.
    """
    source = spec.source
    original = graph.load_model(source)
    source_ir = original.ir_version
    cleanup.lower_ir_version(original)  # the source is also run (equivalence): same loader limits
    model = onnx.ModelProto()
    model.CopyFrom(original)
    changes: list[str] = []

    changes += _clean(model, source_ir)
    model, name, fixes = fix_image_input(model, spec.input, source)
    changes += [f"fixed {fix.describe()} ({fix.why})" for fix in fixes]

    opset_source = graph.opset_of(model)
    if opset_source < graph.MIN_QDQ_OPSET:
        model = graph.upgrade_opset(model, graph.MIN_QDQ_OPSET, source)
        changes.append(f"upgraded opset {opset_source} -> {graph.MIN_QDQ_OPSET} (per-channel QDQ needs 13)")
        model = graph.infer_shapes(model, source)
    shared = cleanup.separate_shared_outputs(model)
    if shared:
        changes.append(f"gave outputs {shared}, which other nodes also read, their own Identity")
    output_value = _pick_output(model, spec.primary_output, source)
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(output))

    cosines = _equivalence(original, model, name, graph.configured_shape(spec.input))
    worst = min(cosines, key=lambda k: cosines[k])
    if cosines[worst] < EQUIVALENCE_MIN_COSINE:
        raise ModelError(
            source,
            f"output {worst!r} of the prepared model differs from the source (cosine {cosines[worst]:.6f} "
            f"at {graph.configured_shape(spec.input)}) after: {'; '.join(changes)}",
            "re-export the model at opset >= 13 with a fixed batch of 1 and report this as a bug",
        )
    return PreparedModel(
        path=output,
        input=graph.io_info(next(i for i in model.graph.input if i.name == name)),
        output=graph.io_info(output_value),
        outputs=[graph.io_info(o) for o in model.graph.output],
        opset_source=opset_source,
        opset=graph.opset_of(model),
        changes=changes,
        input_fixes=fixes,
        equivalence=cosines,
    )


def _clean(model: onnx.ModelProto, source_ir: int) -> list[str]:
    """The exact clean-ups of :mod:`packager.cleanup` that must run before the input is fixed."""
    changes = []
    if source_ir > cleanup.ORT_MAX_IR_VERSION:
        changes.append(f"IR version {source_ir} -> {model.ir_version} (the newest onnxruntime loads)")
    constants = cleanup.constants_to_initializers(model)
    if constants:
        changes.append(f"stored {constants} Constant node tensors as initializers")
    removed = cleanup.drop_initializer_inputs(model)
    if removed:
        changes.append(f"removed {removed} initializers listed as graph inputs")
    upcast = cleanup.upcast_fp16_weights(model)
    if upcast:
        changes.append(f"stored {upcast} FP16 weights (read through Casts to float) as FP32, exactly")
    unused = cleanup.drop_unused_initializers(model)
    if unused:
        changes.append(f"removed {len(unused)} initializers no node reads")
    return changes


def fix_image_input(
    model: onnx.ModelProto, spec: InputSpec, path: Path
) -> tuple[onnx.ModelProto, str, list[graph.InputFix]]:
    """A copy with the image input pinned to the configured shape, all shapes re-inferred, proven to run.

    The copy is run once with onnxruntime at that shape: that is what decides whether a static
    height/width differing from the config is a placeholder (a fully convolutional graph runs) or is
    built into the graph (a Reshape/Gemm sized for it fails).

    Returns:
        (fixed model, image input name, the fixes applied).

    Raises:
        ModelError: the input cannot be fed as configured, extra inputs exist, or the graph does not
            run at the configured shape (the message names the dims, both values and the fix).
    """
    value = graph.image_input(model, spec, path)
    others = [i.name for i in graph.graph_inputs(model) if i.name != value.name]
    if others:
        raise ModelError(
            path, f"extra inputs {others} besides the image input", "export with one image input"
        )
    fixes = graph.plan_input_fixes(value, spec)
    shape = graph.configured_shape(spec)
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    graph.set_input_shape(fixed, value.name, shape)
    fixed = graph.infer_shapes(fixed, path)
    results = _run_at(fixed, value.name, shape, fixes, spec, path)
    _reconcile_outputs(fixed, results)
    return fixed, value.name, fixes


def _sample(shape: list[int], dtype: np.dtype) -> np.ndarray:
    """Deterministic random pixels 0..255 (the range the app feeds before mean/std), seed 0."""
    return np.random.default_rng(0).uniform(0, 255, shape).astype(dtype)


def _input_dtype(model: onnx.ModelProto, name: str) -> np.dtype:
    value = next(i for i in model.graph.input if i.name == name)
    return onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)


def _run_at(
    model: onnx.ModelProto,
    name: str,
    shape: list[int],
    fixes: list[graph.InputFix],
    spec: InputSpec,
    path: Path,
) -> dict[str, np.ndarray]:
    """Outputs by name of one onnxruntime CPU run at ``shape``; a failure is explained via ``fixes``."""
    sample = _sample(shape, _input_dtype(model, name))
    try:
        return _run(model, name, sample)
    except Exception as exc:  # onnxruntime raises its own pybind types (Fail, InvalidArgument, ...)
        raise _cannot_run(path, name, shape, fixes, spec, _ort_reason(exc)) from None


def _ort_reason(exc: Exception) -> str:
    text = first_line(exc)
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    # Drop ORT's C++ source location ("/onnxruntime_src/...h:45 Fn(args) x == y was false. ").
    text = re.sub(r"/onnxruntime_src/\S+ .*? was false\. ", "", text)
    return text if len(text) <= 400 else text[:400] + "..."


def _cannot_run(
    path: Path, name: str, shape: list[int], fixes: list[graph.InputFix], spec: InputSpec, reason: str
) -> ModelError:
    pinned = [f for f in fixes if isinstance(f.from_, int) and f.from_ > 0]
    if not pinned:
        return ModelError(
            path,
            f"the model cannot run at {shape} (batch 1, [models].input size {spec.size}, {spec.channels}, "
            f"{spec.layout}): onnxruntime: {reason}",
            "set [models].input size/layout to what the model was trained for, or re-export it",
        )
    dims = ", ".join(f.dim for f in pinned)
    model_size = list(spec.size)
    for f in pinned:
        if f.dim in ("height", "width"):
            model_size[0 if f.dim == "height" else 1] = int(f.from_)
    fixes_text = []
    if model_size != spec.size:
        fixes_text.append(
            f"set [models].input.size = {model_size} (the size the graph is built for), or re-export the "
            f"model for {spec.height}x{spec.width}"
        )
    if any(f.dim == "batch" for f in pinned):
        fixes_text.append("re-export the model with batch 1 or a dynamic batch")
    return ModelError(
        path,
        f"input {name!r} has static {dims} {[f.from_ for f in pinned]} but the config asks for "
        f"{[f.to for f in pinned]} (batch 1, [models].input.size = {spec.size}), and the graph cannot "
        f"run at {shape}: onnxruntime: {reason}",
        "; ".join(fixes_text),
    )


def _reconcile_outputs(model: onnx.ModelProto, results: dict[str, np.ndarray]) -> None:
    """Make declared output shapes agree with what the fixed model computes.

    Static dims inference got wrong are corrected, and an output inference left without any shape gets
    the computed one. A dim inference left symbolic stays symbolic: it may depend on the data (e.g. a
    detection count), and one run cannot tell.
    """
    for out in model.graph.output:
        actual = results.get(out.name)
        if actual is None or not out.type.HasField("tensor_type"):
            continue
        tensor = out.type.tensor_type
        if not tensor.HasField("shape"):
            log.info(
                "output %s: shape inference gave no shape; using the computed %s", out.name, actual.shape
            )
            tensor.shape.dim.extend(onnx.TensorShapeProto.Dimension(dim_value=d) for d in actual.shape)
            continue
        for dim, size in zip(tensor.shape.dim, actual.shape, strict=False):
            if dim.HasField("dim_value") and dim.dim_value != size:
                log.warning(
                    "output %s: inferred dim %d, computed %d; using %d", out.name, dim.dim_value, size, size
                )
                dim.dim_value = size
            elif not dim.HasField("dim_value"):
                log.info("output %s keeps a symbolic dim (computed %d here)", out.name, size)


def _pick_output(model: onnx.ModelProto, name: str | None, source: Path) -> onnx.ValueInfoProto:
    outputs = list(model.graph.output)
    if name is None:
        return outputs[0]
    for out in outputs:
        if out.name == name:
            return out
    # The model is fine; the config names something it does not have: a config error (exit 2).
    raise ConfigError(
        f"[models].output.name = {name!r}",
        [f"{source.name} has no output named {name!r}; its outputs are {', '.join(o.name for o in outputs)}"],
    )


def _equivalence(
    source: onnx.ModelProto, prepared: onnx.ModelProto, input_name: str, shape: list[int]
) -> dict[str, float]:
    """Cosine (float64) of every output of ``prepared`` to the same output of ``source``, run at ``shape``.

    Both run on one deterministic sample of ``shape`` (pixels 0..255). Static source dims that differ
    from ``shape`` (a batch or size placeholder) are freed first, so the source runs at the shape the
    app feeds instead of a 1x1 or placeholder stand-in. An output missing from ``prepared`` or of
    another shape scores -1.
    """
    sample = _sample(shape, _input_dtype(prepared, input_name))
    src = _run(_free_static_dims(source, input_name, shape), input_name, sample)
    ours = _run(prepared, input_name, sample)
    cosines = {}
    for name, a in src.items():
        b = ours.get(name)
        if b is None or b.shape != a.shape:
            log.warning("output %s: source %s, prepared %s", name, a.shape, None if b is None else b.shape)
            cosines[name] = -1.0
            continue
        cosines[name] = _cosine(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())
    return cosines


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 if denom == 0 and np.array_equal(a, b) else float(np.dot(a, b) / max(denom, 1e-30))


def _free_static_dims(model: onnx.ModelProto, name: str, shape: list[int]) -> onnx.ModelProto:
    """``model`` itself, or a copy whose static input dims that differ from ``shape`` are symbolic."""
    dims = graph.io_info(next(i for i in model.graph.input if i.name == name)).shape
    if all(not isinstance(d, int) or d <= 0 or d == want for d, want in zip(dims, shape, strict=True)):
        return model
    freed: list[int | str] = [
        f"free_{axis}" if isinstance(d, int) and d > 0 and d != want else d
        for axis, (d, want) in enumerate(zip(dims, shape, strict=True))
    ]
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph.set_input_shape(copy, name, freed)
    return copy


def _run(model: onnx.ModelProto, name: str, sample: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs by name of one onnxruntime CPU run (from memory: the source may be a modified copy)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures reach the caller as exceptions; ORT's log would repeat them
    # Old exporters list weights as inputs; ORT uses the initializer when such an input is not fed.
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    results = session.run(None, {name: sample})
    return {out.name: result for out, result in zip(session.get_outputs(), results, strict=True)}
