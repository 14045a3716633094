"""Gates: pass at the bar, fail just past it, skip only what cannot be measured."""

from __future__ import annotations

import pytest

from packager.config import GatesSpec
from packager.results import CosineStats, GateResult, Latency, ModeResult, VariantResult, Verification
from packager.validate.gates import GATE_TABLE_HEADER, evaluate_gates, failure_messages, format_gate_table

SPEC = GatesSpec(min_mean_cosine=0.99, max_auc_drop=0.01, max_decision_flips=0.01)


def _verification(auc: float) -> Verification:
    return Verification(auc=auc, accuracy=0.9, best_threshold=0.4, tar_at_far={"1e-3": None},
                        roc_fpr=[0.0, 1.0], roc_tpr=[0.0, 1.0], positives=10, negatives=10)  # fmt: skip


def _mode(
    mean: float = 1.0, auc: float | None = 0.995, flips: float | None = 0.0, mode: str = "reference"
) -> ModeResult:
    return ModeResult(
        mode=mode,
        cosine=CosineStats(mean=mean, min=mean, p1=mean, count=10),
        verification=None if auc is None else _verification(auc),
        decision_flips=flips,
        latency=Latency(p50_ms=1.0, p90_ms=1.0, runs=5, threads=1),
    )


FP32 = _mode()


def _by_name(results: list[GateResult]) -> dict[str, GateResult]:
    return {r.name: r for r in results}


@pytest.mark.parametrize(("mean", "passed"), [(0.99, True), (0.98999, False)])
def test_mean_cosine_gate_boundary(mean: float, passed: bool) -> None:
    assert _by_name(evaluate_gates(_mode(mean=mean), FP32, SPEC))["min_mean_cosine"].passed is passed


@pytest.mark.parametrize(("auc", "passed"), [(0.985, True), (0.98499, False)])
def test_auc_drop_gate_boundary_tolerates_float_rounding(auc: float, passed: bool) -> None:
    # 0.995 - 0.985 is 0.010000000000000009 in floats: exactly the bar, so it passes.
    gate = _by_name(evaluate_gates(_mode(auc=auc), FP32, SPEC))["max_auc_drop"]
    assert gate.value == pytest.approx(0.995 - auc)
    assert gate.passed is passed


@pytest.mark.parametrize(("flips", "passed"), [(0.01, True), (0.0101, False)])
def test_decision_flips_gate_boundary(flips: float, passed: bool) -> None:
    assert _by_name(evaluate_gates(_mode(flips=flips), FP32, SPEC))["max_decision_flips"].passed is passed


def test_gates_come_in_fixed_order_with_bars_and_the_candidate_mode() -> None:
    results = evaluate_gates(_mode(mode="default"), FP32, SPEC)
    assert [(r.name, r.comparison, r.bar, r.mode) for r in results] == [
        ("min_mean_cosine", ">=", 0.99, "default"),
        ("max_auc_drop", "<=", 0.01, "default"),
        ("max_decision_flips", "<=", 0.01, "default"),
    ]


def test_without_pairs_only_the_cosine_gate_exists() -> None:
    no_pairs = _mode(auc=None, flips=None)
    assert [r.name for r in evaluate_gates(no_pairs, no_pairs, SPEC)] == ["min_mean_cosine"]


def test_missing_candidate_pair_metrics_fail_when_pairs_exist() -> None:
    results = _by_name(evaluate_gates(_mode(auc=None, flips=None), FP32, SPEC))
    assert [(r.value, r.passed) for r in (results["max_auc_drop"], results["max_decision_flips"])] == [
        (None, False),
        (None, False),
    ]


def test_nan_value_fails() -> None:
    assert not _by_name(evaluate_gates(_mode(mean=float("nan")), FP32, SPEC))["min_mean_cosine"].passed


def _variant(name: str, gates: list[GateResult]) -> VariantResult:
    return VariantResult(variant=name, file=f"{name}.onnx", sha256="0" * 64, size_bytes=1, size_ratio=1.0,
                         modes={"reference": FP32}, gate_mode="reference", gates=gates,
                         passed=all(g.passed for g in gates), details={})  # fmt: skip


def test_gate_table_has_one_row_per_gate_with_readable_values() -> None:
    gates = evaluate_gates(_mode(mean=0.98996), FP32, SPEC)
    table = format_gate_table([_variant("fp32", []), _variant("int8-qdq", gates)])
    assert all(len(row) == len(GATE_TABLE_HEADER) for row in table)
    # 0.98996 would print as 0.9900 next to a bar of 0.9900: the extra digit shows why it failed.
    assert table[0] == ["int8-qdq", "min_mean_cosine", "mean cosine vs FP32", "reference",
                        "0.98996", ">= 0.99000", "FAIL"]  # fmt: skip
    assert len(table) == 3


def test_failure_messages_name_variant_value_and_bar() -> None:
    gates = evaluate_gates(_mode(flips=0.025), FP32, SPEC)
    assert failure_messages("int8-qdq", gates) == [
        "int8-qdq: decision flips vs FP32 is 0.0250, needs <= 0.0100 (reference mode)"
    ]
