"""The ORT-format step body both mobile targets share: convert one ONNX variant, size-check it against
FP32, and describe it (converter facts, the pinned runtime, EP coverage). Each target adds its own
session configs on top (:func:`targets.ort_mobile.ep_config.ep_config`)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packager.quantize import registry
from packager.steps import Step, StepContext, StepOutput
from packager.target import ModelProducts, Product, TargetPlan
from targets.ort_mobile.ep_config import EpCoverage
from targets.ort_mobile.ort_format import OrtConversion, RuntimePin, Style


@dataclass(frozen=True)
class OrtFile:
    """What :func:`convert_variant` wrote and found."""

    conversion: OrtConversion
    coverage: list[EpCoverage]
    """Every EP the checkers know (NNAPI, CoreML NeuralNetwork / MLProgram, XNNPACK)."""
    rejected: str | None
    """Why the target should not ship it (an INT8 file no smaller than FP32's), else None."""


def convert_variant(variant: str, style: Style, ctx: StepContext) -> OrtFile:
    """Input ``model`` (.onnx) -> ``<variant>.ort`` and ``<variant>.required_operators.config`` in
    ``ctx.out``, converted for ``--target_platform arm``.

    With input ``fp32_ort`` (the FP32 step's .ort), a file that is not smaller than it is rejected: on
    a small model such as YuNet the quantization parameters and ORT's runtime-optimization records
    outweigh INT8 weights, and the app would gain nothing from it.
    """
    from targets.ort_mobile.ep_config import ep_coverage
    from targets.ort_mobile.ort_format import convert_to_ort

    with tempfile.TemporaryDirectory(prefix=".ort-", dir=ctx.out) as work:
        conversion = convert_to_ort(ctx.inputs["model"], Path(work) / "model", style, "arm")
        os.replace(conversion.ort_path, ctx.out / f"{variant}.ort")
        os.replace(conversion.config_path, ctx.out / f"{variant}.required_operators.config")
    rejected = None
    if "fp32_ort" in ctx.inputs:
        fp32_size = ctx.inputs["fp32_ort"].stat().st_size
        if conversion.size_bytes >= fp32_size:
            rejected = (
                f"{variant}.ort ({conversion.size_bytes / 1e6:.2f} MB) is not smaller than fp32.ort "
                f"({fp32_size / 1e6:.2f} MB): the app would gain nothing from it"
            )
    return OrtFile(conversion, ep_coverage(ctx.inputs["model"]), rejected)


def ort_details(found: OrtFile, runtime: RuntimePin, eps: Sequence[str]) -> dict[str, object]:
    """The record's ``ort_format`` facts and the coverage of ``eps`` (checker names, e.g. ``NNAPI``,
    ``CoreML MLProgram``) as the manifest and report show them."""
    conversion = found.conversion
    shown = [c for c in found.coverage if c.ep in eps]
    return {
        "ort_format": {
            "converter_version": conversion.converter_version,
            # A runtime loads .ort files from an older or equal converter only (DESIGN pitfall 22).
            "runtime_pinned": f"{runtime.package}:{runtime.reference}",
            "ort_format_version": conversion.ort_format_version,
            "optimization_style": conversion.style,
            "target_platform": conversion.target_platform,
            "graph_sha256": conversion.graph_sha256,
            "required_operators": [dataclasses.asdict(ops) for ops in conversion.required_ops],
            "seconds": round(conversion.seconds, 3),
        },
        "ep_coverage": [coverage_row(c) for c in shown],
        "ep_coverage_sources": {c.ep: " ".join([c.source, c.note, *c.caveats]).strip() for c in shown},
    }


def coverage_row(coverage: EpCoverage) -> dict[str, object]:
    """One EP's coverage as the manifest and report show it: supported/total nodes, partitions, verdict."""
    part = coverage.as_is
    return {
        "ep": coverage.ep,
        "supported_nodes": part.supported_nodes,
        "total_nodes": part.nodes,
        "partitions": part.partitions,
        "unsupported_ops": list(part.unsupported_ops),
        "verdict": part.verdict,
    }


TOOLS = ("packager", "onnx", "onnxruntime")


def plan_ort(
    planned: TargetPlan,
    platform: str,
    upstream: ModelProducts,
    variants: Sequence[str],
    run: Callable[[str, StepContext], dict[str, object]],
    *,
    params: Mapping[str, object],
    folder: str,
    required: bool,
    choice: str | None = None,
) -> None:
    """One ``<platform>-ort[<model>:<variant>]`` step and product per variant, FP32 first: ``fp32.ort``
    and each of ``variants`` (an INT8 step also gets FP32's .ort, to reject a file no smaller);
    ``folder`` is where the files ship in the bundle, ``choice`` makes the non-FP32 ones alternatives."""
    model = upstream.spec.name
    for variant in dict.fromkeys(["fp32", *variants]):
        fp32_ort = {"fp32_ort": StepOutput(f"{platform}-ort[{model}:fp32]", "fp32.ort")}
        step = Step(
            f"{platform}-ort[{model}:{variant}]",
            "convert",
            run=lambda ctx, variant=variant: run(variant, ctx),
            inputs={"model": upstream.variants[variant]} | (fp32_ort if variant != "fp32" else {}),
            params=dict(params),
            tools=TOOLS,
        )
        planned.steps.append(step)
        planned.products.append(
            Product(
                model=model,
                variant=variant,
                platform=platform,
                runtime="onnxruntime",
                format="ort",
                precision=registry.precision_of(variant),
                bundle_path=f"{folder}/{variant}.ort",
                source=StepOutput(step.name, f"{variant}.ort"),
                required=required,
                choice=choice if variant != "fp32" else None,
            )
        )
