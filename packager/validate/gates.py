"""Release gates: bars by output kind, applied to every output of a variant in its gate mode.

The gates are data (:data:`GATES`): each names its metric, its comparison, the output kinds that
have the metric, the default bar per kind (where a default means something for that kind), and the
data it needs. For each output, a bar comes from the output's own ``gates`` table, else the model's
``gates`` table, else the kind's default; a gate with no bar is not applied.

A gate never judges data the user did not give: ``max_auc_drop`` and ``max_decision_flips`` exist
only for embedding outputs when evaluation pairs were measured (the FP32 reference's
``verification`` records it), ``min_mask_iou`` only when the output has a ``mask_threshold``. Once
the data exists, a candidate value that is missing is a failure with ``value=None``: a variant
that could not be measured must not ship as "passed".

A value equal to its bar passes; comparisons allow ``GATE_TOLERANCE`` for float rounding, so an
AUC drop that is exactly the bar in exact arithmetic does not fail on the 17th digit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from packager.errors import ConfigError
from packager.results import GateResult, ModeResult, OutputMetrics

if TYPE_CHECKING:
    from packager.config import GatesSpec, OutputSpec

GATE_TOLERANCE = 1e-12

ALL_KINDS = ("embedding", "classification", "logits", "dense", "generic")
CLASS_KINDS = ("classification", "logits")

Comparison = Literal[">=", "<="]


@dataclass(frozen=True)
class GateDef:
    name: str
    metric: str
    comparison: Comparison
    kinds: tuple[str, ...]
    """Output kinds that have this metric."""
    defaults: dict[str, float]
    """Default bar by kind; kinds not listed have the gate only when a bar is configured."""
    value: Callable[[OutputMetrics, OutputMetrics], float | None]
    """(candidate, FP32) -> the gated value."""
    needs: Literal["pairs", "mask_threshold"] | None = None


def _auc_drop(candidate: OutputMetrics, reference: OutputMetrics) -> float | None:
    if candidate.verification is None or reference.verification is None:
        return None
    return reference.verification.auc - candidate.verification.auc


GATES: tuple[GateDef, ...] = (
    # 0.99 mean cosine: the bar the faceid example was released on (DESIGN §3); an embedding or an
    # unknown tensor further from FP32 than that is visibly different downstream.
    GateDef("min_mean_cosine", "mean cosine vs FP32", ">=", ALL_KINDS,
            {"embedding": 0.99, "generic": 0.99}, lambda c, r: c.cosine.mean),
    GateDef("max_auc_drop", "AUC drop vs FP32", "<=", ("embedding",), {"embedding": 0.01}, _auc_drop,
            needs="pairs"),
    GateDef("max_decision_flips", "decision flips vs FP32", "<=", ("embedding",), {"embedding": 0.01},
            lambda c, r: c.decision_flips, needs="pairs"),
    # A classifier whose top-1 answer changes on more than 1 in 100 inputs is a different product.
    GateDef("min_top1_agreement", "top-1 agreement with FP32", ">=", CLASS_KINDS,
            {"classification": 0.99, "logits": 0.99}, lambda c, r: c.top1_agreement),
    GateDef("min_top5_agreement", "top-5 agreement with FP32", ">=", CLASS_KINDS, {},
            lambda c, r: c.top5_agreement),
    GateDef("max_kl_divergence", "KL divergence vs FP32 (nats)", "<=", CLASS_KINDS, {},
            lambda c, r: c.kl_divergence),
    # 30 dB SQNR: quantization noise at 1/1000 of the signal's power; ORT's QDQ debugging guide
    # treats layers well above 20-30 dB as unaffected.
    GateDef("min_sqnr_db", "SQNR vs FP32 (dB)", ">=", ALL_KINDS, {"dense": 30.0}, lambda c, r: c.sqnr_db),
    GateDef("min_mask_iou", "mask IoU vs FP32", ">=", ("dense",), {"dense": 0.9}, lambda c, r: c.mask_iou,
            needs="mask_threshold"),
)  # fmt: skip

GATES_BY_NAME = {g.name: g for g in GATES}


def inapplicable_gates(kind: str, bars: dict[str, float]) -> list[str]:
    """Configured gate names that a ``kind`` output does not have (a config error at output level)."""
    return [name for name in bars if name in GATES_BY_NAME and kind not in GATES_BY_NAME[name].kinds]


def output_gates(
    kind: str, declared: GatesSpec | None, model: GatesSpec, has_pairs: bool, has_mask: bool
) -> list[tuple[GateDef, float]]:
    """The gates of one output and their bars, in :data:`GATES` order (see the module docstring)."""
    own = declared.given() if declared is not None else {}
    shared = model.given()
    found = []
    for gate in GATES:
        if kind not in gate.kinds:
            continue
        if (gate.needs == "pairs" and not has_pairs) or (gate.needs == "mask_threshold" and not has_mask):
            continue
        bar = own.get(gate.name, shared.get(gate.name, gate.defaults.get(kind)))
        if bar is not None:
            found.append((gate, float(bar)))
    return found


def _passes(value: float | None, bar: float, comparison: Comparison) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if comparison == ">=":
        return value >= bar - GATE_TOLERANCE
    return value <= bar + GATE_TOLERANCE


@dataclass(frozen=True)
class OutputGatePlan:
    """The gates of one output: its name and ``(gate, bar)`` pairs from :func:`output_gates`."""

    output: str
    gates: list[tuple[GateDef, float]]


def plan_gates(
    outputs: Sequence[str], declared: Sequence[OutputSpec], model: GatesSpec, has_pairs: bool
) -> list[OutputGatePlan]:
    """Gate plans for every output of a model; undeclared outputs are ``generic``.

    ``declared`` may hold one spec without a name (the ``output`` shorthand): it is the first output.
    """
    by_name = {(d.name or outputs[0]): d for d in declared}
    plans = []
    for name in outputs:
        spec = by_name.get(name)
        kind = spec.kind if spec else "generic"
        has_mask = spec is not None and spec.mask_threshold is not None
        gates = output_gates(kind, spec.gates if spec else None, model, has_pairs, has_mask)
        plans.append(OutputGatePlan(name, gates))
    return plans


def evaluate_gates(
    candidate: ModeResult, reference: ModeResult, plans: Sequence[OutputGatePlan]
) -> list[GateResult]:
    """Gate results for one variant: outputs in model order, gates in :data:`GATES` order.

    ``candidate`` is the variant measured in its gate mode; ``reference`` is FP32 measured on the
    same inputs (and pairs). The caller decides the mode (mobile artifacts: ``reference``).
    """
    results = []
    for plan in plans:
        cand, ref = candidate.output(plan.output), reference.output(plan.output)
        for gate, bar in plan.gates:
            value = gate.value(cand, ref)
            results.append(
                GateResult(
                    output=plan.output,
                    name=gate.name,
                    metric=gate.metric,
                    value=value,
                    bar=bar,
                    comparison=gate.comparison,
                    mode=candidate.mode,
                    passed=_passes(value, bar, gate.comparison),
                )
            )
    return results


TASK_OUTPUT = "task"
"""The ``output`` of gates on task-check metrics."""


def evaluate_task_gates(candidate: ModeResult, bars: dict[str, float]) -> list[GateResult]:
    """Gates on the task check's metrics (``task.gates``); the check says which direction is better.

    A bar on a metric the check does not report is a config error listing what it does report (a
    typo in a release bar must not pass or fail silently); a metric reported as None fails.
    """
    found = {t.name: t for t in candidate.task}
    unknown = sorted(set(bars) - set(found))
    if unknown and candidate.task:
        raise ConfigError(
            "task.gates",
            [f"the task check reports no metric {unknown}; it reports: {', '.join(sorted(found))}"],
        )
    results = []
    for name, bar in bars.items():
        metric = found.get(name)
        comparison: Comparison = ">=" if metric is None or metric.higher_is_better else "<="
        value = None if metric is None else metric.value
        results.append(
            GateResult(
                output=TASK_OUTPUT,
                name=f"task:{name}",
                metric=metric.description if metric else f"{name} (not reported by the task check)",
                value=value,
                bar=float(bar),
                comparison=comparison,
                mode=candidate.mode,
                passed=_passes(value, float(bar), comparison),
            )
        )
    return results


def _margin(gate: GateResult) -> float:
    """How far the value is on the passing side of its bar, relative to the bar (negative = failing)."""
    if gate.value is None or not math.isfinite(gate.value):
        return -math.inf
    diff = gate.value - gate.bar if gate.comparison == ">=" else gate.bar - gate.value
    return diff / max(abs(gate.bar), 1e-12)


def worst_gate(gates: Sequence[GateResult]) -> GateResult | None:
    """The gate closest to failing (a failing one first): what a summary shows for a variant."""
    return min(gates, key=_margin, default=None)
