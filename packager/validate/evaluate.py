"""Measure one artifact against the FP32 reference on the evaluation set: every output, by its kind,
in each runtime mode."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from packager.errors import StepError
from packager.results import ModeResult, OrtMode, OutputMetrics, TaskResult
from packager.tasks import TaskCheck, TaskContext, check_failed
from packager.validate import metrics
from packager.validate.formats import NotRunnable, Runner, cannot_run_here, modes_for, runner_for
from packager.validate.runners import OrtRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputPlan:
    """How one output is compared: its kind, the app's normalisation, an optional mask threshold."""

    name: str
    kind: str = "generic"
    normalize: str = "none"
    mask_threshold: float | None = None


@dataclass(frozen=True)
class EvaluationData:
    tensors: np.ndarray
    """Preprocessed evaluation inputs, float32 [N, *input_shape[1:]]."""
    pairs: np.ndarray | None
    """int [M, 2] indices into ``tensors`` for verification, or None without pairs."""
    labels: np.ndarray | None
    """int [M], 1 same / 0 different; None without pairs."""
    reference_outputs: dict[str, np.ndarray] | None
    """FP32 outputs on ``tensors`` by output name; None when evaluating the reference itself."""
    threshold: float | None
    """The app's same/different threshold; None means FP32's best-accuracy threshold."""


@dataclass(frozen=True)
class TaskRun:
    """A loaded task check and what it needs besides the outputs."""

    check: TaskCheck
    context: TaskContext
    name: str
    """The ``module:function`` spec, for error messages."""
    base: Path
    """The config's folder: a ``file.py:function`` spec is relative to it."""
    field: str
    """The config field that names the check, for errors (``packager.toml [models] 'm'.task.check``)."""

    def run(self, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> list[TaskResult]:
        """The check's metrics on ``reference`` and ``candidate`` outputs.

        Raises:
            StepError: the check raised; names the line of its file and what a check receives.
        """
        try:
            found = self.check(reference, candidate, self.context)
        except Exception as exc:  # a user's hook: any failure is theirs to see, named
            raise check_failed(self.name, self.base, self.field, self.check, exc, reference) from exc
        return [TaskResult(**dataclasses.asdict(m)) for m in found]


@dataclass(frozen=True)
class LatencySettings:
    runs: int
    warmup: int
    threads: int


def _normalized(values: np.ndarray, how: str) -> np.ndarray:
    if how != "l2":
        return values
    rows = values.reshape(len(values), -1).astype(np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0).reshape(values.shape)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def output_metrics(
    plan: OutputPlan, reference: np.ndarray, candidate: np.ndarray, data: EvaluationData
) -> OutputMetrics:
    """Every metric ``plan.kind`` has, for one output (definitions in :mod:`packager.validate.metrics`)."""
    ref, cand = _normalized(reference, plan.normalize), _normalized(candidate, plan.normalize)
    dense = metrics.dense_stats(ref, cand)
    found: dict[str, object] = {}
    if plan.kind in ("classification", "logits"):
        classes = int(np.prod(ref.shape[1:]))
        found["top1_agreement"] = metrics.topk_agreement(ref, cand, 1)
        found["top5_agreement"] = metrics.topk_agreement(ref, cand, 5) if classes >= 5 else None
        found["kl_divergence"] = metrics.kl_divergence(ref, cand, logits=plan.kind == "logits")
    if plan.kind == "dense" and plan.mask_threshold is not None:
        found["mask_iou"] = metrics.mask_iou(ref, cand, plan.mask_threshold)
    if plan.kind == "embedding" and data.pairs is not None and data.labels is not None:
        scores = metrics.pair_scores(cand, data.pairs)
        reference_scores = metrics.pair_scores(ref, data.pairs)
        threshold = data.threshold
        if threshold is None:
            threshold = metrics.best_accuracy(reference_scores, data.labels)[1]
        found["verification"] = metrics.verification(scores, data.labels)
        found["decision_flips"] = metrics.decision_flips(reference_scores, scores, threshold)
    return OutputMetrics(
        name=plan.name,
        kind=plan.kind,
        cosine=metrics.cosine_stats(ref, cand),
        sqnr_db=dense.sqnr_db,
        min_sqnr_db=dense.min_sqnr_db,
        psnr_db=dense.psnr_db,
        max_abs=_finite(dense.max_abs),
        rel_l2=_finite(dense.rel_l2),
        **found,  # type: ignore[arg-type]
    )


def evaluate_mode(
    model: Path,
    mode: OrtMode,
    plans: Sequence[OutputPlan],
    data: EvaluationData,
    latency: LatencySettings,
    progress: Callable[[int, int], None] | None = None,
    label: str | None = None,
    task: TaskRun | None = None,
    baseline: Path | None = None,
) -> tuple[ModeResult, dict[str, np.ndarray]]:
    """One artifact in one mode: metrics of every output in ``plans`` (and of the task check, if
    any) and the raw outputs by name. With ``baseline`` (the FP32 model) in the default mode, both
    are timed with their runs interleaved, so their ratio is not skewed by load that came and went
    between two steps.

    The runner is chosen by the file's format; a converted artifact's outputs are renamed and laid
    out as the ONNX reference's (``data.reference_outputs``). Raises
    :class:`~packager.validate.formats.NotRunnable` when this host cannot run the file.
    """
    reference_outputs = data.reference_outputs
    runner = runner_for(
        model,
        mode,
        threads=latency.threads,
        label=label,
        reference_names=None if reference_outputs is None else list(reference_outputs),
        reference_shapes=None
        if reference_outputs is None
        else {name: list(values.shape) for name, values in reference_outputs.items()},
    )
    outputs = runner.run_all(data.tensors, progress)
    reference = outputs if data.reference_outputs is None else data.reference_outputs
    measured = [output_metrics(p, reference[p.name], outputs[p.name], data) for p in plans]
    baseline_latency = None
    if baseline is not None and mode == "default":
        fp32 = OrtRunner(baseline, "default", threads=latency.threads, label="fp32 baseline")
        times, fp32_times = interleaved_times(runner, fp32, data.tensors[0], latency)
        baseline_latency = metrics.latency(fp32_times, latency.threads)
    else:
        times = runner.time(data.tensors[0], latency.runs, latency.warmup)
    task_results = [] if task is None else task.run(reference, outputs)
    result = ModeResult(
        mode=mode,
        outputs=measured,
        task=task_results,
        latency=metrics.latency(times, latency.threads),
        # a runtime without ORT's graph optimization levels (LiteRT) has none to record
        optimization_level=runner.optimization_level or "n/a",
        optimization_fallback=runner.optimization_fallback,
        baseline_latency=baseline_latency,
    )
    return result, outputs


def interleaved_times(
    runner: Runner, baseline: Runner, sample: np.ndarray, latency: LatencySettings
) -> tuple[list[float], list[float]]:
    """Seconds per run of ``runner`` and of ``baseline``, alternating run by run after both warm up."""
    runner.time(sample, 0, latency.warmup)
    baseline.time(sample, 0, latency.warmup)
    own: list[float] = []
    base: list[float] = []
    for _ in range(latency.runs):
        own += runner.time(sample, 1, 0)
        base += baseline.time(sample, 1, 0)
    return own, base


def evaluate(
    model: Path,
    modes: Sequence[OrtMode],
    plans: Sequence[OutputPlan],
    data: EvaluationData,
    latency: LatencySettings,
    progress: Callable[[str, int, int], None],
    label: str | None = None,
    task: TaskRun | None = None,
    baseline: Path | None = None,
) -> tuple[dict[str, ModeResult], dict[str, np.ndarray]]:
    """All modes for one artifact that its format has; returns the first mode's outputs (the
    reference keeps them). ``baseline``: the FP32 model, timed interleaved (see :func:`evaluate_mode`).

    A mode the artifact's format does not have (``reference`` for a .tflite) is skipped and logged.
    ``label`` names the artifact in progress and errors (default: the file's stem). Raises
    :class:`~packager.validate.formats.NotRunnable` when this host cannot run the file, and
    :class:`StepError` when the format has none of ``modes``.
    """
    results: dict[str, ModeResult] = {}
    first_outputs: dict[str, np.ndarray] | None = None
    name = label or model.stem
    reason = cannot_run_here(model)
    if reason is not None:
        raise NotRunnable(name, reason)
    supported = modes_for(model)
    skipped = [mode for mode in modes if mode not in supported]
    if skipped:
        log.info("%s: %s artifacts have no %s mode, skipped", name, model.suffix, " or ".join(skipped))
    if len(skipped) == len(modes):
        raise StepError(
            f"validate {name}",
            f"{model.suffix} artifacts have none of the modes asked for ({', '.join(modes)})",
            f"validate {model.suffix} artifacts in {' or '.join(supported)} mode",
        )
    for mode in (m for m in modes if m in supported):
        shown = f"{name} [{mode}]"
        result, outputs = evaluate_mode(
            model,
            mode,
            plans,
            data,
            latency,
            lambda done, total, shown=shown: progress(shown, done, total),
            label=name,
            task=task,
            baseline=baseline,
        )
        results[mode] = result
        first_outputs = outputs if first_outputs is None else first_outputs
    assert first_outputs is not None
    return results, first_outputs
