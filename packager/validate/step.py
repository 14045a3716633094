"""The validate step body: load the evaluation data and FP32's outputs, measure one artifact, save its
outputs. Planned by :mod:`packager.build` for every variant and every platform artifact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from packager.build import OUTPUTS_FILE
from packager.config import ModelSpec
from packager.results import ModeResult, OrtMode, PreparedMeta
from packager.steps import StepContext
from packager.tasks import TaskContext, load_check
from packager.validate.evaluate import EvaluationData, LatencySettings, OutputPlan, TaskRun, evaluate

"""Each validate step's outputs on the evaluation tensors, float32 by output name."""


class ValidationMeta(BaseModel):
    """The validate step's record: the measurements per accuracy mode (gates are applied later, when
    results are assembled, so editing a bar re-gates without re-measuring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    modes: dict[str, ModeResult]


def output_plans(spec: ModelSpec, outputs: list[str]) -> list[OutputPlan]:
    """How each output of the model is compared: declared ones by their spec, others as generic."""
    declared = spec.declared_by_name(outputs)
    plans = []
    for name in outputs:
        d = declared.get(name)
        plans.append(
            OutputPlan(name, d.kind, d.normalize, d.mask_threshold) if d is not None else OutputPlan(name)
        )
    return plans


@dataclass(frozen=True)
class ValidateJob:
    """What one validate step measures, fixed when the plan is made."""

    spec: ModelSpec
    config_dir: Path
    """Folder of packager.toml: task checks are found relative to it."""
    modes: tuple[OrtMode, ...]
    latency: LatencySettings
    label: str
    """Names the artifact in progress and errors ("int8-qdq of model m")."""
    task_field: str
    """The config field naming the task check, for its errors (``packager.toml [models] 'm'.task.check``)."""


def validate_step(job: ValidateJob, prepared: PreparedMeta, ctx: StepContext) -> dict[str, object]:
    """``prepared`` is the prepare step's record (the model's outputs, in order). Inputs ``model``,
    ``tensors``, ``pairs``, ``labels``, optionally ``reference_outputs`` (FP32's outputs.npz) and
    ``baseline`` (FP32 .onnx, timed interleaved with the model for the latency ratio).
    Writes ``outputs.npz``; returns :class:`ValidationMeta` as JSON."""
    spec = job.spec
    ref_outputs = None
    if "reference_outputs" in ctx.inputs:
        with np.load(ctx.inputs["reference_outputs"]) as stored:
            ref_outputs = {k: stored[k] for k in stored.files}
    labels = np.load(ctx.inputs["labels"])
    data = EvaluationData(
        tensors=np.load(ctx.inputs["tensors"]),
        pairs=np.load(ctx.inputs["pairs"]) if len(labels) else None,
        labels=labels if len(labels) else None,
        reference_outputs=ref_outputs,
        threshold=spec.evaluation.threshold,
    )
    plans = output_plans(spec, [o.name for o in prepared.outputs])
    task = None
    if spec.task is not None:
        context = TaskContext(data.tensors, (spec.input.height, spec.input.width), spec.input.layout)
        check = load_check(spec.task.check, job.config_dir, job.task_field)
        task = TaskRun(check, context, spec.task.check, job.config_dir, job.task_field)
    results, outputs = evaluate(
        ctx.inputs["model"],
        job.modes,
        plans,
        data,
        job.latency,
        ctx.progress,
        label=job.label,
        task=task,
        baseline=ctx.inputs.get("baseline"),
    )
    np.savez(ctx.out / OUTPUTS_FILE, **outputs)
    return ValidationMeta(modes=results).model_dump(mode="json")
