"""Release gates: the config's bars applied to one variant's metrics in its gate mode.

Which gates exist for a model:

* ``min_mean_cosine`` always: every model has outputs to compare with FP32.
* ``max_auc_drop`` and ``max_decision_flips`` only when evaluation pairs were measured, which the
  FP32 reference's ``verification`` records (``None`` = no pairs, so neither metric can exist and
  the gates are skipped, not passed). Once pairs exist, a candidate value that is missing is a
  failure with ``value=None``: a variant that could not be measured must not ship as "passed".
  (When the config sets no decision threshold, the builder should measure flips at FP32's best
  threshold rather than leave ``decision_flips`` empty.)

A value equal to its bar passes; comparisons allow ``GATE_TOLERANCE`` for float rounding, so an
AUC drop that is exactly the bar in exact arithmetic does not fail on the 17th digit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from packager.config import GatesSpec
from packager.report.format import against, verdict
from packager.results import GateResult, ModeResult, VariantResult

GATE_TOLERANCE = 1e-12

GATE_TABLE_HEADER: tuple[str, ...] = ("variant", "gate", "metric", "mode", "value", "bar", "result")


def _passes(value: float | None, bar: float, comparison: Literal[">=", "<="]) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if comparison == ">=":
        return value >= bar - GATE_TOLERANCE
    return value <= bar + GATE_TOLERANCE


def _gate(
    name: str,
    metric: str,
    value: float | None,
    bar: float,
    comparison: Literal[">=", "<="],
    candidate: ModeResult,
) -> GateResult:
    return GateResult(
        name=name,
        metric=metric,
        value=value,
        bar=bar,
        comparison=comparison,
        mode=candidate.mode,
        passed=_passes(value, bar, comparison),
    )


def evaluate_gates(candidate: ModeResult, reference: ModeResult, spec: GatesSpec) -> list[GateResult]:
    """Gate results for one variant, in a fixed order (cosine, AUC drop, flips).

    ``candidate`` is the variant measured in its gate mode; ``reference`` is FP32 measured on the
    same inputs and pairs. The caller decides the mode (mobile artifacts: ``reference``).
    """
    results = [
        _gate(
            "min_mean_cosine",
            "mean cosine vs FP32",
            candidate.cosine.mean,
            spec.min_mean_cosine,
            ">=",
            candidate,
        )
    ]
    if reference.verification is None:
        return results
    auc_drop = None
    if candidate.verification is not None:
        auc_drop = reference.verification.auc - candidate.verification.auc
    results.append(_gate("max_auc_drop", "AUC drop vs FP32", auc_drop, spec.max_auc_drop, "<=", candidate))
    results.append(
        _gate(
            "max_decision_flips",
            "decision flips vs FP32",
            candidate.decision_flips,
            spec.max_decision_flips,
            "<=",
            candidate,
        )
    )
    return results


def gate_row(gate: GateResult, variant: str = "") -> list[str]:
    """One table row (see ``GATE_TABLE_HEADER``); value and bar printed so they never look equal."""
    value, bar = against(gate.value, gate.bar)
    return [
        variant,
        gate.name,
        gate.metric,
        gate.mode,
        value,
        f"{gate.comparison} {bar}",
        verdict(gate.passed),
    ]


def format_gate_table(variants: Sequence[VariantResult]) -> list[list[str]]:
    """One row per gate of each variant, as plain strings for the CLI to print.

    Columns are ``GATE_TABLE_HEADER`` (not included, so tables of several models concatenate);
    variants without gates (the FP32 reference) have no rows.
    """
    return [gate_row(gate, variant.variant) for variant in variants for gate in variant.gates]


def failure_messages(variant: str, gates: Sequence[GateResult]) -> list[str]:
    """One line per failed gate, e.g. for ``GateFailed``: names the variant, metric, value and bar."""
    messages = []
    for gate in gates:
        if gate.passed:
            continue
        value, bar = against(gate.value, gate.bar)
        messages.append(
            f"{variant}: {gate.metric} is {value}, needs {gate.comparison} {bar} ({gate.mode} mode)"
        )
    return messages
