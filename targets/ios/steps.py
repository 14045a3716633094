"""Step bodies of the iOS target. Heavy toolchains (coremltools, TensorFlow) are imported inside them,
so loading the target (``packager --help``, ``packager graph``) stays fast."""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING

from packager.config import ModelSpec, ProjectSpec
from packager.results import IOInfo
from packager.steps import StepContext
from packager.target import ArtifactRecord, ArtifactRecords
from targets.ios.config import IosSpec

if TYPE_CHECKING:
    from targets.ios.coreml_check import Feature
    from targets.ort_mobile.ep_config import EpCoverage

log = logging.getLogger(__name__)

IOS_EPS = ("CoreML NeuralNetwork", "CoreML MLProgram")
"""The coverage rows an iOS app cares about (the checker's names for the CoreML EP's two formats)."""


def ort_step(table: IosSpec, variant: str, ctx: StepContext) -> dict[str, object]:
    """Input ``model`` (.onnx) -> ``<variant>.ort`` and ``<variant>.required_operators.config``; the
    record carries the converter facts, the CoreML EP coverage of both formats and the session configs
    (CoreML EP options, then the CPU EP). A QDQ INT8 variant gets a warning with its coverage: the CoreML
    EP takes almost none of it (DESIGN §5 pitfall 8), nor the ConvInteger of a dynamic INT8 one."""
    from packager.quantize import registry
    from targets.ort_mobile.ep_config import CoreMLOptions, ep_config, recommended_style
    from targets.ort_mobile.ort_format import IOS_SWIFT_PACKAGE
    from targets.ort_mobile.step import convert_variant, ort_details

    style = recommended_style(table.ort_eps)
    found = convert_variant(variant, style, ctx)
    coreml = CoreMLOptions(model_format=table.coreml_model_format, compute_units=table.compute_units)
    config = ep_config(table.ort_eps, table.threads, style, coreml=coreml, source="[ios] ort_eps")
    details = ort_details(found, IOS_SWIFT_PACKAGE, IOS_EPS)
    details["session_config"] = config.model_dump(mode="json")
    # Without the CoreML EP in the loader's plans, its coverage is a fact, not a warning.
    uses_coreml = "coreml" in table.ort_eps
    warnings = _format_warnings(found.coverage, table.coreml_model_format) if uses_coreml else []
    if uses_coreml and "int8" in registry.precision_of(variant):
        chosen = f"CoreML {table.coreml_model_format}"
        part = next(c.as_is for c in found.coverage if c.ep == chosen)
        warning = (
            f"{variant}.ort on the CoreML EP ({table.coreml_model_format}): {part.supported_nodes} of "
            f"{part.nodes} nodes in {part.partitions} partitions; QDQ INT8 barely runs on Core ML, the rest "
            'falls back to the CPU: ship fp16 for the CoreML EP ([ios].ort_variant = "auto")'
        )
        warnings.insert(0, warning)
    for warning in warnings:
        log.warning("%s", warning)
    if warnings:
        details["warnings"] = warnings
    record = ArtifactRecord(
        details=details, rejected=found.rejected, nondeterminism=found.conversion.nondeterminism
    )
    return ArtifactRecords(artifacts={f"{variant}.ort": record}).model_dump(mode="json")


def _format_warnings(coverage: list[EpCoverage], chosen: str) -> list[str]:
    """A warning when the CoreML EP format the loader asks for splits the model and the other format
    would not (ORT 1.23's MLProgram lacks BatchNormalization and Flatten, which NeuralNetwork takes)."""
    by_format = {c.ep.removeprefix("CoreML "): c.as_is for c in coverage if c.ep in IOS_EPS}
    other = "NeuralNetwork" if chosen == "MLProgram" else "MLProgram"
    mine, theirs = by_format.get(chosen), by_format.get(other)
    if mine is None or theirs is None or mine.partitions <= 1 or theirs.partitions >= mine.partitions:
        return []
    missing = ", ".join(op.split(":")[-1] for op in mine.unsupported_ops) or "none listed"
    return [
        f"the CoreML EP in {chosen} format takes {mine.supported_nodes} of {mine.nodes} nodes in "
        f"{mine.partitions} partitions (not: {missing}); {other} would take {theirs.supported_nodes} in "
        f'{theirs.partitions}: consider [ios].coreml_model_format = "{other}" and compare on a device'
    ]


def coreml_step(spec: ModelSpec, table: IosSpec, project: ProjectSpec, ctx: StepContext) -> dict[str, object]:
    """Inputs ``saved_model`` (the shared onnx2tf SavedModel) and ``model`` (the prepared FP32 .onnx) ->
    ``fp16.mlpackage`` and, when configured, ``int8-weights.mlpackage``; each checked on this host as far
    as coremltools can without Core ML (:func:`targets.ios.coreml_check.inspect_mlpackage`: an ML Program,
    every weight FP16 or INT8, the ONNX model's inputs and outputs). The record's tensors carry the Core
    ML feature names; ``details.coreml.feature_names`` maps them to the ONNX names.

    Raises :class:`~packager.errors.ConversionError` naming the op coremltools cannot convert, or every
    problem the inspection found.
    """
    import onnx

    from packager.graph import graph_inputs, io_info
    from targets.ios.coreml import compress_int8, convert_mlpackage
    from targets.ios.coreml_check import CoreMLMetadata, inspect_mlpackage

    model = onnx.load(str(ctx.inputs["model"]), load_external_data=False)
    inputs = graph_inputs(model)
    # A dim without a value (none in a prepared model's input) counts as 1, the batch Core ML gets.
    shapes = {
        io.name: [d if isinstance(d, int) else 1 for d in io.shape]
        for io in map(io_info, [*inputs, *model.graph.output])
    }
    input_name = inputs[0].name
    outputs = [o.name for o in model.graph.output]
    metadata = CoreMLMetadata(
        author=table.author or project.name,
        version=project.version,
        short_description=f"{spec.name} of {project.name} {project.version}, {_kinds(spec, outputs)}",
        license=table.license or None,
        user_defined={
            "packager.preprocessing": spec.input.model_dump_json(),
            "packager.outputs": json.dumps({o: _kind(spec, outputs, o) for o in outputs}, sort_keys=True),
            "packager.onnx_input": input_name,
        },
    )
    fp16 = convert_mlpackage(
        ctx.inputs["saved_model"],
        ctx.out / "fp16.mlpackage",
        input_name=input_name,
        input_shape=tuple(shapes[input_name]),
        output_names=outputs,
        minimum_deployment_target=table.deployment_target,  # type: ignore[arg-type]
        metadata=metadata,
        onnx_model=ctx.inputs["model"],
    )
    expected_in = {input_name: tuple(shapes[input_name])}
    expected_out = {o: tuple(shapes[o]) for o in outputs}
    records: dict[str, ArtifactRecord] = {}
    made: list[tuple[str, object]] = [("fp16", None)]
    if "int8-weights" in table.coreml_precisions:
        made.append(("int8-weights", compress_int8(fp16.path, ctx.out / "int8-weights.mlpackage")))
    for precision, compression in made:
        facts = inspect_mlpackage(
            ctx.out / f"{precision}.mlpackage",
            expected_inputs=expected_in,
            expected_outputs=expected_out,
            expected_weight_dtype="float16" if precision == "fp16" else "int8",
        )
        details: dict[str, object] = {
            "coreml": {
                "model_type": facts.model_type,
                "spec_version": facts.spec_version,
                "deployment_target": facts.deployment_target,
                "compute_precision": "float16",
                "weight_dtypes": facts.weight_dtypes,
                "weights_kept_float": facts.kept_float,
                "weight_bytes": facts.weight_bytes,
                "converter": facts.converter,
                "feature_names": fp16.onnx_names,
                "channels_last_outputs": list(facts.channels_last_outputs),
                "seconds": round(fp16.seconds, 1),
            },
            "checked_on_this_host": (
                "loaded with coremltools (skip_model_load=True): ML Program, weight dtypes from "
                "coremltools' weight metadata, inputs and outputs against the ONNX model; Core ML itself "
                "was not run"
                if sys.platform != "darwin"
                else "loaded and run by Core ML"
            ),
        }
        if compression is not None:
            details["coreml"]["compression"] = {  # type: ignore[index]
                "method": "linear_quantize_weights, linear_symmetric int8, per channel",
                "weight_threshold": compression.weight_threshold,  # type: ignore[attr-defined]
                "deployment_target_raised_from": compression.raised_from,  # type: ignore[attr-defined]
            }
        records[f"{precision}.mlpackage"] = ArtifactRecord(
            inputs=[_io(f) for f in facts.inputs],
            outputs=[_io(f) for f in facts.outputs],
            details=details,
        )
    return ArtifactRecords(artifacts=records).model_dump(mode="json")


def _kind(spec: ModelSpec, outputs: list[str], name: str) -> str:
    declared = spec.declared_by_name(outputs)
    found = declared.get(name)
    return f"{found.kind}, normalize {found.normalize}" if found is not None else "generic"


def _kinds(spec: ModelSpec, outputs: list[str]) -> str:
    kinds = sorted({_kind(spec, outputs, o).split(",")[0] for o in outputs})
    return f"{len(outputs)} output(s): {', '.join(kinds)}"


def _io(feature: Feature) -> IOInfo:
    return IOInfo(name=feature.name, dtype=feature.dtype, shape=list(feature.shape))
