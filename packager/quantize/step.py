"""The quantize and calibrate step bodies: run a registered recipe, or the shared calibration that
static recipes read. Planned by :mod:`packager.build`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from packager.config import ModelSpec
from packager.quantize import registry
from packager.quantize.calibrated import run_calibration
from packager.quantize.registry import DECISION_FILE, AnalysisContext, QuantizeContext
from packager.steps import StepContext


def calibrate_step(spec: ModelSpec, ctx: StepContext) -> dict[str, object]:
    """Inputs ``reference`` (FP32 .onnx) and ``calibration`` (float32 .npy [N, *input]); writes the
    calibrated ranges to ``ctx.out`` (see :func:`packager.quantize.calibrated.run_calibration`)."""
    assert spec.calibration is not None
    progress = ctx.progress
    return run_calibration(
        ctx.inputs["reference"],
        np.load(ctx.inputs["calibration"]),
        spec.calibration,
        spec.calibration.probe_images,
        ctx.out,
        lambda done, total: progress(f"calibrating {spec.name}", done, total),
        output=spec.primary_output,
    )


def quantize_step(spec: ModelSpec, variant: str, ctx: StepContext) -> dict[str, object]:
    """Run recipe ``variant`` on input ``reference``: writes ``<variant>.onnx``, returns the recipe's
    record."""
    with tempfile.TemporaryDirectory(prefix=f"packager-{variant}-") as work:
        qctx = QuantizeContext(
            spec=spec,
            reference=ctx.inputs["reference"],
            output=ctx.out / f"{variant}.onnx",
            work_dir=Path(work),
            calibrated=ctx.inputs.get("calibrated"),
            decision=ctx.inputs.get("decision"),
        )
        return registry.get(variant).run(qctx)


def analyze_step(spec: ModelSpec, variant: str, ctx: StepContext) -> dict[str, object]:
    """Run recipe ``variant``'s analysis on inputs ``reference`` and ``calibration_data``: writes
    ``decision.json`` for the recipe, returns the analysis record."""
    analysis = registry.get(variant).analysis
    assert analysis is not None
    with tempfile.TemporaryDirectory(prefix=f"packager-analyze-{variant}-") as work:
        actx = AnalysisContext(
            spec=spec,
            reference=ctx.inputs["reference"],
            calibration_data=ctx.inputs["calibration_data"],
            decision=ctx.out / DECISION_FILE,
            work_dir=Path(work),
        )
        return analysis(actx)
