"""FP16 weights and compute, float32 inputs/outputs so the app's tensors do not change.

The converter is onnxconverter-common 1.16 ``float16.convert_float_to_float16``. Order of work:

1. Fold with onnxruntime's basic graph optimizations (ORT_ENABLE_BASIC, CPU EP, saved through
   ``optimized_model_filepath``): constant folding, Conv+BatchNorm fusion and other rewrites that
   produce standard ONNX ops only (ORT docs, "Graph optimizations": basic level is applied before
   partitioning, for every EP). Unfolded, a BatchNorm variance of ~1e8 (PP-OCRv4 det) is clamped by
   the converter and the model is destroyed (cosine 0.37 at 640x640); folded into the Conv it is a
   small weight (0.9994). One host effect: for FP16 nodes the x86 CPU EP has no kernel for, the saved
   graph computes them in float behind ``InsertedPrecisionFreeCast_*`` Casts of their FP16 weights.
2. Make the graph one the converter handles: a ``Cast(to=FLOAT)`` of an FP16 initializer (a
   ``model.half()`` export, or those inserted Casts) becomes the FP32 initializer (exact); every
   other ``Cast(to=FLOAT)`` becomes ``Cast(to=FLOAT16)``, because the converter rewrites a Cast's
   output type to FLOAT16 but not its ``to`` attribute, which onnxruntime refuses ("Type
   (tensor(float16)) of output arg ... does not match expected type (tensor(float))"), except a
   Cast that makes a graph output, which stays a float Cast (the converter fails on a Cast to
   FLOAT16 there). A graph output other nodes also read gets its own ``Identity``, so those nodes
   read an FP16 tensor and not the float32 output. Nodes whose ONNX schema allows no FP16 for a
   float tensor they use (QuantizeLinear at opset 13, Celu, ...) stay float. The graph edits are in
   :mod:`packager.quantize.fp16_graph`.
3. Range audit (:mod:`packager.quantize.fp16_range`): weights beyond 65504, and, with calibration
   data, activations; those nodes stay float (``node_block_list``). The activation audit is the
   recipe's ``analysis``, its own step (``analyze[model:fp16]``): new calibration images rerun it,
   and the conversion only when the set of nodes it keeps in float changes.
4. Convert with ``check_fp16_ready=False``. That check refuses a graph with any FP16 tensor, to stop
   converting a converted model twice; after step 2 the only FP16 left is compute the exporter chose
   (an autocast region), which the converter leaves alone (it rewrites FLOAT tensors only).
5. Repair what 1.16 gets wrong around float nodes, repack, and load the result in onnxruntime
   (ORT_DISABLE_ALL) so a broken graph is reported here with the converter named.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from packager import cleanup
from packager.errors import ConversionError, first_line
from packager.quantize import fp16_graph, fp16_range
from packager.quantize.registry import AnalysisContext, QuantizeContext

log = logging.getLogger(__name__)

CONVERTER = "onnxconverter-common float16 (convert_float_to_float16)"
FOLDER = "onnxruntime graph optimizer (ORT_ENABLE_BASIC)"
MIN_POSITIVE = 1e-7
"""The converter's default ``min_positive_val``: smaller non-zero weights become +-1e-7 (harmless)."""
FIX = (
    'drop "fp16" from this model\'s variants in packager.toml (the other variants are unaffected) and '
    "report the model to https://github.com/microsoft/onnxconverter-common/issues"
)


def _repack_raw(model: onnx.ModelProto) -> int:
    """Store FP16 initializers as raw bytes; returns how many were rewritten.

    onnxconverter-common writes them into ``int32_data`` (4 bytes per half): the file is then 0.63x
    FP32 instead of 0.50x (DESIGN §5.15).
    """
    count = 0
    for tensor in model.graph.initializer:
        if tensor.data_type == TensorProto.FLOAT16 and not tensor.raw_data:
            array = numpy_helper.to_array(tensor).astype(np.float16)
            tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
            count += 1
    return count


@dataclass(frozen=True)
class _Prepared:
    """The FP32 graph as the converter and the range audit both see it (steps 1-2)."""

    source: onnx.ModelProto
    model: onnx.ModelProto
    read_outputs: list[str]
    upcast: int
    types: dict[str, int]


def _prepare(reference: Path, work_dir: Path, step: str) -> _Prepared:
    """Fold, name every node, keep the used opset imports, upcast FP16 weights, infer shapes. Node names
    are deterministic, so the audit's decision (node names) applies to the converter's graph."""
    source = onnx.load(str(reference))
    model = onnx.load(str(_fold(reference, work_dir / "folded.onnx", step)))
    read_outputs = fp16_graph.separate_read_outputs(model)
    fp16_graph.name_nodes(model.graph)
    # ORT's saved model imports every domain it knows (com.microsoft, org.pytorch.aten, ...): keep the used.
    used = {n.domain for n in model.graph.node} | {""}
    kept_imports = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(kept_imports)
    upcast = cleanup.upcast_fp16_weights(model)  # ORT's folding wraps FP16 weights in Casts again
    model = onnx.shape_inference.infer_shapes(model)
    return _Prepared(source, model, read_outputs, upcast, fp16_graph.elem_types(model.graph))


def analyze_fp16_ranges(ctx: AnalysisContext) -> dict[str, object]:
    """Step 3's activation part, on the calibration tensors: writes the nodes to keep in float (a
    sorted JSON list of node names) to ``ctx.decision``; returns the audit record and its findings."""
    step = f"analyze[{ctx.spec.name}:fp16]"
    prepared = _prepare(ctx.reference, ctx.work_dir, step)
    ranges = _audit(prepared.model, np.load(ctx.calibration_data), step)
    ctx.decision.write_text(json.dumps(sorted({k.node for k in ranges.kept_in_float})))
    record = ranges.record()
    return {"fp16_range_audit": record, "findings": fp16_range.activation_findings(record)}


def convert_fp16(ctx: QuantizeContext) -> dict[str, object]:
    step = f"quantize[{ctx.spec.name}:fp16]"
    prepared = _prepare(ctx.reference, ctx.work_dir, step)
    source, model, types = prepared.source, prepared.model, prepared.types

    weights = fp16_range.weights_out_of_range(model)
    kept = {n for w in weights for n in w.nodes}
    findings = fp16_range.weight_findings(weights)
    # The analysis step records the activation audit; without calibration data there is none, and
    # this step's record says why.
    not_run: dict[str, object] | None = None
    if ctx.decision is None:
        not_run = fp16_range.not_run(
            "no calibration data (the config has no [models.calibration] table): activation ranges are "
            "unknown, and this host's onnxruntime computes most FP16 nodes in float, so validation here "
            "cannot show FP16 overflow"
        )
        findings += fp16_range.activation_findings(not_run)
    else:
        kept |= set(json.loads(ctx.decision.read_text()))
    no_fp16 = _no_fp16_in_schema(model, types)
    output_casts = fp16_graph.float_output_casts(model.graph)
    kept |= {*no_fp16, *output_casts}
    retargeted = fp16_graph.retarget_float_casts(model.graph, kept)
    fp16_graph.private_initializers(model.graph, kept)

    converted = _convert(model, kept, step)
    fp16_graph.bypass_cast_pairs(converted.graph)
    fp16_graph.restore_float_outputs(
        converted.graph, {o.name for o in source.graph.output if fp16_graph.is_float(o)}
    )
    fp16_graph.merge_float_casts(converted.graph)
    repacked = _repack_raw(converted)
    onnx.save(converted, str(ctx.output))
    _check_loads(ctx.output, step)
    details: dict[str, object] = {
        "tool": "onnxconverter_common.float16",
        "keep_io_types": True,
        "max_finite_val": fp16_range.FP16_MAX,
        "folded": _fold_summary(source, model),
        "source_fp16_initializers": sum(
            1 for t in source.graph.initializer if t.data_type == TensorProto.FLOAT16
        ),
        "fp16_weights_upcast": prepared.upcast,
        "casts_to_fp16": retargeted,
        "float_output_casts": output_casts,
        "outputs_given_identity": prepared.read_outputs,
        "no_fp16_in_schema": no_fp16,
        "float_by_converter_default": _default_float_ops(model.graph),
        "fp16_weight_range": {
            "limit": fp16_range.FP16_MAX,
            "out_of_range": [w.record() for w in weights],
            "min_positive_val": MIN_POSITIVE,
            "initializers_with_values_raised_to_min": fp16_range.weights_below(
                model, MIN_POSITIVE, skip={i for n in model.graph.node if n.name in kept for i in n.input}
            ),
        },
        "findings": findings,
        "kept_in_float": sorted(kept),
        "initializers_repacked_raw": repacked,
    }
    if not_run is not None:
        details["fp16_range_audit"] = not_run
    return details


def _fold(reference: Path, output: Path, step: str) -> Path:
    """Write ``reference`` after onnxruntime's basic optimizations (CPU EP) to ``output``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(output)
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(reference), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises several pybind exception types
        raise ConversionError(step, FOLDER, first_line(exc), FIX) from exc
    return output


def _fold_summary(source: onnx.ModelProto, folded: onnx.ModelProto) -> dict[str, object]:
    def count(model: onnx.ModelProto, op: str | None = None) -> int:
        return sum(1 for n in model.graph.node if op is None or n.op_type == op)

    return {
        "tool": FOLDER,
        "nodes": [count(source), count(folded)],
        "batchnorm": [count(source, "BatchNormalization"), count(folded, "BatchNormalization")],
    }


def _audit(model: onnx.ModelProto, data: np.ndarray, step: str) -> fp16_range.RangeAudit:
    try:
        return fp16_range.audit_activations(model, data)
    except Exception as exc:  # onnxruntime's own errors; the FP32 model loaded before, so say which run
        raise ConversionError(step, "onnxruntime (FP16 range audit run)", first_line(exc), FIX) from exc


def _convert(model: onnx.ModelProto, kept: set[str], step: str) -> onnx.ModelProto:
    from onnxconverter_common import float16

    try:
        # Out-of-range weights are findings of the audit and stay float; the converter's per-tensor
        # "will be truncated" warnings would only repeat them (and the harmless tiny-value ones).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float16.convert_float_to_float16(
                model,
                min_positive_val=MIN_POSITIVE,
                max_finite_val=fp16_range.FP16_MAX,
                keep_io_types=True,
                disable_shape_infer=True,  # inferred before the Casts were retargeted
                node_block_list=sorted(kept),
                check_fp16_ready=False,
            )
    except Exception as exc:  # the converter raises ValueError, AssertionError, KeyError...
        raise ConversionError(step, CONVERTER, f"{type(exc).__name__}: {first_line(exc)}", FIX) from exc


def _check_loads(path: Path, step: str) -> None:
    """Load the converted model as the reference-mode validation will, and name the node it refuses."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        message = first_line(exc)
        node = re.search(r"node \(([^()]+)\)|node with name '([^']+)'", message)
        name = next((g for g in node.groups() if g), None) if node else None
        raise ConversionError(
            step, CONVERTER, f"wrote a model onnxruntime refuses: {message}", FIX, node=name
        ) from exc


# --- what stays float ------------------------------------------------------------------------


def _no_fp16_in_schema(model: onnx.ModelProto, types: dict[str, int]) -> list[str]:
    """Nodes whose ONNX schema (at the model's opset) allows no FP16 where they use a float tensor.

    The converter would give them FP16 anyway: its ``DEFAULT_OP_BLOCK_LIST`` (skipped here, those
    stay float) is a fixed list, while the schema's type constraints are the source of truth, e.g.
    QuantizeLinear-13 ``T1`` is float/int32 and DequantizeLinear-13 outputs ``tensor(float)`` only.
    """
    from onnxconverter_common import float16

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    found = []
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type in float16.DEFAULT_OP_BLOCK_LIST:
            continue
        try:
            schema = onnx.defs.get_schema(node.op_type, opset, "")
        except onnx.defs.SchemaError:
            continue
        allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
        for formals, actuals in ((schema.inputs, node.input), (schema.outputs, node.output)):
            slots = [
                formals[min(i, len(formals) - 1)]  # the last formal parameter may be variadic
                for i, name in enumerate(actuals)
                if name and formals and types.get(name) == TensorProto.FLOAT
            ]
            if any("tensor(float16)" not in allowed.get(f.type_str, {f.type_str}) for f in slots):
                found.append(node.name)
                break
    return sorted(found)


def _default_float_ops(graph: onnx.GraphProto) -> dict[str, int]:
    """Nodes per op type that the converter keeps float by default (``DEFAULT_OP_BLOCK_LIST``)."""
    from onnxconverter_common import float16

    counts: dict[str, int] = {}
    for node in graph.node:
        if node.op_type in float16.DEFAULT_OP_BLOCK_LIST:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))
