"""The Android target's steps and artifacts, planned from the core's upstream products.

Bundle layout: one Gradle library module, ``android/<module>/``, so an app adds
``implementation(project(":<module>"))``; every model file sits in its assets:

* ``src/main/assets/<model>/fp32.ort`` and the chosen INT8 variant's ``<variant>.ort`` (ORT format,
  ``--target_platform arm``), each validated against FP32 by the core like any variant;
* ``src/main/assets/<model>/fp32.tflite``, ``fp16.tflite``, ``int8.tflite`` (onnx2tf), validated the
  same way through the LiteRT interpreter;
* Kotlin loaders, ``build.gradle.kts`` and the EP configs are generated from the manifest afterwards
  (:mod:`targets.android.sources`).
"""

from __future__ import annotations

import re
from importlib import metadata

from packager.errors import ConfigError
from packager.steps import Step, StepOutput
from packager.target import ModelProducts, Product, TargetContext, TargetPlan
from targets.android import steps
from targets.android.config import DEFAULT_INT8_METHOD, AndroidSpec
from targets.ort_mobile.ort_format import ANDROID_RUNTIME, check_runtime_version
from targets.ort_mobile.step import plan_ort
from targets.saved_model import saved_model_step

PLATFORM = "android"
INT8_PREFERENCE = ("mixed", "int8-qdq", "int8-dynamic")
"""``ort_variant = "auto"``: the first of these the model builds that passes its gates ships. Mixed
first: it keeps the layers INT8 hurts most in float, so it is the most accurate INT8 variant."""
TFLITE_TOOLS = ("packager", "onnx", "onnx2tf", "tensorflow", "ai-edge-litert", "onnxsim", "numpy")


def module_name(project: str, table: AndroidSpec) -> str:
    """The Gradle module's folder and name: ``[android].module``, else the project name made a valid
    module name (lower case; anything but letters, digits, ``-`` and ``_`` becomes ``-``)."""
    return table.module or re.sub(r"[^a-z0-9_-]+", "-", project.lower()).strip("-") or "models"


def asset_dir(module: str, model: str) -> str:
    """Where a model's files ship inside the bundle (Gradle's default assets folder)."""
    return f"{PLATFORM}/{module}/src/main/assets/{model}"


def plan(context: TargetContext) -> TargetPlan:
    """Steps and products for every model; raises :class:`ConfigError` for a table the models
    cannot satisfy (a variant they do not build, INT8 with no calibration images)."""
    table = context.table
    assert isinstance(table, AndroidSpec)
    if "ort" in table.runtimes:
        check_runtime_version(ANDROID_RUNTIME.version, metadata.version("onnxruntime"))
    module = module_name(context.config.project.name, table)
    planned = TargetPlan()
    problems: list[str] = []
    for upstream in context.models:
        for runtime, add in (("ort", _ort), ("tflite", _tflite)):
            if runtime in table.runtimes:
                try:
                    add(upstream, table, module, planned)
                except ConfigError as exc:  # every model's problems at once, not the first
                    problems += [f"{exc.source}: {p}" for p in exc.problems]
    if problems:
        raise ConfigError("[android]", list(dict.fromkeys(problems)))
    return planned


def _ort_variants(upstream: ModelProducts, table: AndroidSpec) -> list[str]:
    model = upstream.spec.name
    if table.ort_variant == "auto":
        return [v for v in INT8_PREFERENCE if v in upstream.variants]
    if table.ort_variant not in upstream.variants:
        built = ", ".join(sorted(upstream.variants))
        raise ConfigError(
            "[android].ort_variant",
            [f"model {model!r} builds no variant {table.ort_variant!r} (it builds: {built}); "
             "add it to the model's variants or use \"auto\""],
        )  # fmt: skip
    return [table.ort_variant] if table.ort_variant != "fp32" else []


def _ort(upstream: ModelProducts, table: AndroidSpec, module: str, planned: TargetPlan) -> None:
    candidates = _ort_variants(upstream, table)
    plan_ort(
        planned,
        PLATFORM,
        upstream,
        candidates,
        lambda variant, ctx: steps.ort_step(table, variant, ctx),
        params={"eps": list(table.ort_eps), "threads": table.threads, "style": steps.ort_style(table)},
        folder=asset_dir(module, upstream.spec.name),
        required="ort" not in table.optional_runtimes,
        choice="ort-int8" if len(candidates) > 1 else None,
    )


def _tflite(upstream: ModelProducts, table: AndroidSpec, module: str, planned: TargetPlan) -> None:
    model = upstream.spec.name
    required = "tflite" not in table.optional_runtimes
    if "int8" in table.tflite_precisions and upstream.calibration is None:
        raise ConfigError(
            "[android].tflite_precisions",
            [f"int8 needs calibration images and model {model!r} has none: add [models].calibration "
             "or drop int8"],
        )  # fmt: skip
    float_step = saved_model_step(upstream)
    planned.steps.append(float_step)
    assets = asset_dir(module, model)

    def product(precision: str, source: StepOutput, details_step: str | None = None) -> Product:
        return Product(
            model=model,
            variant="fp32",
            platform=PLATFORM,
            runtime="tflite",
            format="tflite",
            precision=precision,
            bundle_path=f"{assets}/{precision}.tflite",
            source=source,
            required=required,
            details_step=details_step,
        )

    for precision in ("fp32", "fp16"):
        if precision in table.tflite_precisions:
            planned.products.append(product(precision, StepOutput(float_step.name, f"{precision}.tflite")))
    if "int8-dynamic" in table.tflite_precisions:
        dynamic = Step(
            f"android-tflite-int8-dynamic[{model}]",
            "convert",
            run=steps.tflite_dynamic_step,
            inputs={
                "saved_model": StepOutput(float_step.name, "saved_model"),
                "model": upstream.prepared,
                "tensors": upstream.evaluation,
            },
            tools=TFLITE_TOOLS,
        )
        planned.steps.append(dynamic)
        planned.products.append(product("int8-dynamic", StepOutput(dynamic.name, "int8-dynamic.tflite")))
    if "int8" in table.tflite_precisions:
        assert upstream.calibration is not None
        int8 = Step(
            f"android-tflite-int8[{model}]",
            "convert",
            run=lambda ctx: steps.tflite_int8_step(upstream.spec, table.threads, DEFAULT_INT8_METHOD, ctx),
            inputs={"model": upstream.prepared, "calibration": upstream.calibration},
            params={"method": DEFAULT_INT8_METHOD, "threads": table.threads},
            tools=TFLITE_TOOLS,
        )
        check = Step(
            f"android-tflite-speed[{model}]",
            "bench",
            run=lambda ctx: steps.tflite_speed_step(table, ctx),
            inputs={
                "int8": StepOutput(int8.name, "int8.tflite"),
                "fp32": StepOutput(float_step.name, "fp32.tflite"),
            },
            params={
                "threads": table.threads,
                "max_partitions": table.max_partitions,
                "slower_int8": table.slower_int8,
            },
            tools=("packager", "ai-edge-litert"),
        )
        planned.steps.extend([int8, check])
        planned.products.append(product("int8", StepOutput(int8.name, "int8.tflite"), check.name))
