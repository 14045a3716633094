"""The iOS target's steps and artifacts, planned from the core's upstream products.

Bundle layout: one Swift package, ``ios/<Module>/``, that an app adds as a local package; every model
file is a resource of its one target, copied as is (``.copy("Resources")``):

* ``Sources/<Module>/Resources/<model>/fp32.ort`` and the chosen variant's ``<variant>.ort`` (ORT format
  for the CoreML EP, ``--target_platform arm``), validated against FP32 by the core like any variant;
* ``Sources/<Module>/Resources/<model>/fp16.mlpackage`` (and ``int8-weights.mlpackage``): a Core ML ML
  Program converted by coremltools from the SavedModel the Android target's TFLite files also come
  from. Core ML predicts only on macOS: elsewhere that SavedModel is measured in its place, and the
  package itself is checked as far as coremltools can without running it (:mod:`targets.ios.coreml_check`);
* Swift loaders, ``Package.swift`` and the EP options are generated from the manifest afterwards
  (:mod:`targets.ios.sources`).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from packager.config import ProjectSpec
from packager.errors import ConfigError
from packager.steps import Step, StepOutput
from packager.target import ModelProducts, Product, TargetContext, TargetPlan
from packager.validate.formats import cannot_run_here
from targets.ios import steps
from targets.ios.config import IosSpec, module_name
from targets.ort_mobile.ort_format import IOS_SWIFT_PACKAGE, check_runtime_version
from targets.ort_mobile.step import plan_ort
from targets.saved_model import saved_model_step

PLATFORM = "ios"
COREML_TOOLS = ("packager", "onnx", "coremltools", "numpy")
NOT_MEASURED = {"fp16": "Core ML's FP16 compute", "int8-weights": "its INT8 weights and FP16 compute"}
"""What measuring a package's SavedModel leaves out, by ``[ios].coreml_precisions`` entry."""


def saved_model_label(precision: str) -> str:
    """What a package's stand-in is, as the report says it: the FP32 SavedModel catches a wrong
    conversion by onnx2tf (DESIGN §5 pitfall 24), not the rounding of the package itself."""
    return f"the FP32 TF SavedModel it was converted from ({NOT_MEASURED[precision]} not measured)"


def resource_dir(module: str, model: str) -> str:
    """Where a model's files ship inside the bundle (the Swift target's copied resources)."""
    return f"{PLATFORM}/{module}/Sources/{module}/Resources/{model}"


def plan(context: TargetContext) -> TargetPlan:
    """Steps and products for every model; raises :class:`ConfigError` for a table the models cannot
    satisfy (a variant they do not build), every model's problems at once."""
    table = context.table
    assert isinstance(table, IosSpec)
    if "ort" in table.runtimes:
        check_runtime_version(IOS_SWIFT_PACKAGE.version, metadata.version("onnxruntime"), "[ios] ort runtime")
    module = module_name(context.config.project.name, table)
    planned = TargetPlan()
    problems: list[str] = []
    for upstream in context.models:
        try:
            if "ort" in table.runtimes:
                _ort(upstream, table, module, planned)
            if "coreml" in table.runtimes:
                _coreml(upstream, table, module, planned, context.config.project)
        except ConfigError as exc:
            problems += [f"{exc.source}: {p}" for p in exc.problems]
    if problems:
        raise ConfigError("[ios]", list(dict.fromkeys(problems)))
    return planned


def ort_variant(upstream: ModelProducts, table: IosSpec) -> str:
    """The variant shipped as ORT format beside FP32 (``fp32`` when FP32 ships alone)."""
    if table.ort_variant == "auto":
        return "fp16" if "fp16" in upstream.variants else "fp32"
    if table.ort_variant not in upstream.variants:
        built = ", ".join(sorted(upstream.variants))
        raise ConfigError(
            "[ios].ort_variant",
            [f"model {upstream.spec.name!r} builds no variant {table.ort_variant!r} (it builds: {built}); "
             "add it to the model's variants or use \"auto\""],
        )  # fmt: skip
    return table.ort_variant


def _ort(upstream: ModelProducts, table: IosSpec, module: str, planned: TargetPlan) -> None:
    plan_ort(
        planned,
        PLATFORM,
        upstream,
        [ort_variant(upstream, table)],
        lambda variant, ctx: steps.ort_step(table, variant, ctx),
        params={
            "eps": list(table.ort_eps),
            "threads": table.threads,
            "model_format": table.coreml_model_format,
            "compute_units": table.compute_units,
        },
        folder=resource_dir(module, upstream.spec.name),
        required="ort" not in table.optional_runtimes,
    )


def _coreml(
    upstream: ModelProducts, table: IosSpec, module: str, planned: TargetPlan, project: ProjectSpec
) -> None:
    model = upstream.spec.name
    saved = saved_model_step(upstream)
    step = Step(
        f"ios-coreml[{model}]",
        "convert",
        run=lambda ctx: steps.coreml_step(upstream.spec, table, project, ctx),
        inputs={"saved_model": StepOutput(saved.name, "saved_model"), "model": upstream.prepared},
        params={
            "precisions": list(table.coreml_precisions),
            "deployment_target": table.deployment_target,
            "author": table.author,
            "license": table.license,
            "project": [project.name, project.version],
        },
        tools=COREML_TOOLS,
    )
    planned.steps.extend([saved, step])
    for precision in table.coreml_precisions:
        planned.products.append(
            Product(
                model=model,
                variant="fp32",
                platform=PLATFORM,
                runtime="coreml",
                format="mlpackage",
                precision=precision,
                bundle_path=f"{resource_dir(module, model)}/{precision}.mlpackage",
                source=StepOutput(step.name, f"{precision}.mlpackage"),
                required="coreml" not in table.optional_runtimes,
                not_validated_reason=cannot_run_here(Path(f"{precision}.mlpackage")),
                proxy=StepOutput(saved.name, "saved_model"),
                proxy_label=saved_model_label(precision),
            )
        )
