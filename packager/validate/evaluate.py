"""Measure one artifact against the FP32 reference on the evaluation set, in each runtime mode."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from packager.results import ModeResult, OrtMode
from packager.validate import metrics
from packager.validate.runners import OrtRunner


@dataclass(frozen=True)
class EvaluationData:
    tensors: np.ndarray
    pairs: np.ndarray
    labels: np.ndarray
    reference_outputs: np.ndarray | None
    """FP32 outputs on ``tensors``; None when evaluating the reference itself."""
    threshold: float | None
    """The app's same/different threshold; None means FP32's best-accuracy threshold."""


@dataclass(frozen=True)
class LatencySettings:
    runs: int
    warmup: int
    threads: int


def evaluate_mode(
    model: Path,
    mode: OrtMode,
    data: EvaluationData,
    latency: LatencySettings,
    output_name: str | None,
    progress: Callable[[int, int], None] | None = None,
    label: str | None = None,
) -> tuple[ModeResult, np.ndarray]:
    runner = OrtRunner(model, mode, threads=latency.threads, output=output_name, label=label)
    outputs = runner.run(data.tensors, progress)
    reference = outputs if data.reference_outputs is None else data.reference_outputs
    cosine = metrics.cosine_stats(reference, outputs)
    scores = metrics.pair_scores(outputs, data.pairs)
    verification = metrics.verification(scores, data.labels)
    reference_scores = metrics.pair_scores(reference, data.pairs)
    threshold = data.threshold
    if threshold is None:
        threshold = metrics.best_accuracy(reference_scores, data.labels)[1]
    flips = metrics.decision_flips(reference_scores, scores, threshold)
    times = runner.time(data.tensors[0], latency.runs, latency.warmup)
    result = ModeResult(
        mode=mode,
        cosine=cosine,
        verification=verification,
        decision_flips=flips,
        latency=metrics.latency(times, latency.threads),
        optimization_level=runner.optimization_level,
        optimization_fallback=runner.optimization_fallback,
    )
    return result, outputs


def evaluate(
    model: Path,
    modes: Sequence[OrtMode],
    data: EvaluationData,
    latency: LatencySettings,
    output_name: str | None,
    progress: Callable[[str, int, int], None],
    label: str | None = None,
) -> tuple[dict[str, ModeResult], np.ndarray]:
    """All modes for one artifact; returns the first mode's outputs (the reference uses them).

    ``label`` names the artifact in progress and errors (default: the file's stem).
    """
    results: dict[str, ModeResult] = {}
    first_outputs: np.ndarray | None = None
    name = label or model.stem
    for mode in modes:
        shown = f"{name} [{mode}]"
        result, outputs = evaluate_mode(
            model,
            mode,
            data,
            latency,
            output_name,
            lambda done, total, shown=shown: progress(shown, done, total),
            label=name,
        )
        results[mode] = result
        first_outputs = outputs if first_outputs is None else first_outputs
    assert first_outputs is not None
    return results, first_outputs
