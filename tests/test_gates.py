"""Gates: bars by output kind, per output; pass at the bar, fail just past it, never judge absent data."""

from __future__ import annotations

import pytest

from packager.config import GatesSpec, OutputSpec
from packager.report.tables import GATE_TABLE_HEADER, failure_messages, format_gate_table
from packager.results import (
    CosineStats,
    GateResult,
    Latency,
    ModeResult,
    OutputMetrics,
    VariantResult,
    Verification,
)
from packager.validate.gates import evaluate_gates, plan_gates, worst_gate

SPEC = GatesSpec(min_mean_cosine=0.99, max_auc_drop=0.01, max_decision_flips=0.01)
EMBEDDING = [OutputSpec(name="emb", kind="embedding")]


def _verification(auc: float) -> Verification:
    return Verification(auc=auc, accuracy=0.9, best_threshold=0.4, tar_at_far={"1e-3": None},
                        roc_fpr=[0.0, 1.0], roc_tpr=[0.0, 1.0], positives=10, negatives=10)  # fmt: skip


def _out(name: str = "emb", kind: str = "embedding", mean: float = 1.0, sqnr: float = 80.0, **extra: object):
    return OutputMetrics(name=name, kind=kind, cosine=CosineStats(mean=mean, min=mean, p1=mean, count=10),
                         sqnr_db=sqnr, min_sqnr_db=sqnr, psnr_db=sqnr, max_abs=0.0, rel_l2=0.0,
                         **extra)  # fmt: skip


def _mode(
    mean: float = 1.0, auc: float | None = 0.995, flips: float | None = 0.0, mode: str = "reference"
) -> ModeResult:
    verification = None if auc is None else _verification(auc)
    return _modes([_out(mean=mean, verification=verification, decision_flips=flips)], mode)


def _modes(outputs: list[OutputMetrics], mode: str = "reference") -> ModeResult:
    return ModeResult(mode=mode, outputs=outputs, latency=Latency(p50_ms=1.0, p90_ms=1.0, runs=5, threads=1))


FP32 = _mode()


def _gates(candidate: ModeResult, reference: ModeResult = FP32, declared=EMBEDDING, spec=SPEC, pairs=True):
    outputs = [o.name for o in reference.outputs]
    return evaluate_gates(candidate, reference, plan_gates(outputs, declared, spec, pairs))


def _by_name(results: list[GateResult]) -> dict[str, GateResult]:
    return {r.name: r for r in results}


@pytest.mark.parametrize(("mean", "passed"), [(0.99, True), (0.98999, False)])
def test_mean_cosine_gate_boundary(mean: float, passed: bool) -> None:
    assert _by_name(_gates(_mode(mean=mean)))["min_mean_cosine"].passed is passed


@pytest.mark.parametrize(("auc", "passed"), [(0.985, True), (0.98499, False)])
def test_auc_drop_gate_boundary_tolerates_float_rounding(auc: float, passed: bool) -> None:
    # 0.995 - 0.985 is 0.010000000000000009 in floats: exactly the bar, so it passes.
    gate = _by_name(_gates(_mode(auc=auc)))["max_auc_drop"]
    assert gate.value == pytest.approx(0.995 - auc)
    assert gate.passed is passed


@pytest.mark.parametrize(("flips", "passed"), [(0.01, True), (0.0101, False)])
def test_decision_flips_gate_boundary(flips: float, passed: bool) -> None:
    assert _by_name(_gates(_mode(flips=flips)))["max_decision_flips"].passed is passed


def test_gates_come_in_fixed_order_with_bars_output_and_the_candidate_mode() -> None:
    results = _gates(_mode(mode="default"))
    assert [(r.output, r.name, r.comparison, r.bar, r.mode) for r in results] == [
        ("emb", "min_mean_cosine", ">=", 0.99, "default"),
        ("emb", "max_auc_drop", "<=", 0.01, "default"),
        ("emb", "max_decision_flips", "<=", 0.01, "default"),
    ]


def test_without_pairs_only_the_cosine_gate_applies() -> None:
    results = _gates(_mode(auc=None, flips=None), _mode(auc=None, flips=None), pairs=False)
    assert [r.name for r in results] == ["min_mean_cosine"]


def test_missing_candidate_value_fails_once_pairs_exist() -> None:
    gates = _by_name(_gates(_mode(auc=None, flips=None)))
    assert gates["max_auc_drop"].passed is False and gates["max_auc_drop"].value is None
    assert gates["max_decision_flips"].passed is False


def test_non_finite_value_fails() -> None:
    assert _by_name(_gates(_mode(mean=float("nan"))))["min_mean_cosine"].passed is False


def test_each_kind_gets_its_default_gates() -> None:
    outputs = [
        _out("heat", "dense", sqnr=35.0),
        _out("logits", "logits", top1_agreement=0.995, top5_agreement=1.0, kl_divergence=0.01),
        _out("other", "generic"),
    ]
    declared = [OutputSpec(name="heat", kind="dense"), OutputSpec(name="logits", kind="logits")]
    results = _gates(_modes(outputs), _modes(outputs), declared, GatesSpec(), pairs=False)
    assert [(r.output, r.name, r.bar) for r in results] == [
        ("heat", "min_sqnr_db", 30.0),
        ("logits", "min_top1_agreement", 0.99),
        ("other", "min_mean_cosine", 0.99),
    ]
    assert all(r.passed for r in results)


def test_an_output_s_own_bar_beats_the_model_bar_which_beats_the_default() -> None:
    outputs = [_out("heat", "dense", sqnr=27.0), _out("box", "dense", sqnr=27.0)]
    declared = [
        OutputSpec(name="heat", kind="dense", gates=GatesSpec(min_sqnr_db=25.0)),
        OutputSpec(name="box", kind="dense"),
    ]
    results = _gates(_modes(outputs), _modes(outputs), declared, GatesSpec(min_sqnr_db=28.0), pairs=False)
    assert [(r.output, r.bar, r.passed) for r in results] == [("heat", 25.0, True), ("box", 28.0, False)]


def test_mask_iou_is_gated_only_with_a_mask_threshold() -> None:
    outputs = [_out("prob", "dense", sqnr=40.0, mask_iou=0.85)]
    plain = _gates(_modes(outputs), _modes(outputs), [OutputSpec(name="prob", kind="dense")], GatesSpec())
    masked = _gates(
        _modes(outputs),
        _modes(outputs),
        [OutputSpec(name="prob", kind="dense", mask_threshold=0.5)],
        GatesSpec(),
    )
    assert [r.name for r in plain] == ["min_sqnr_db"]
    assert _by_name(masked)["min_mask_iou"].passed is False


def test_a_gate_the_kind_does_not_have_is_a_config_error() -> None:
    with pytest.raises(ValueError, match=r"gates \['min_top1_agreement'\] do not apply to a dense output"):
        OutputSpec(name="heat", kind="dense", gates=GatesSpec(min_top1_agreement=0.9))


def test_worst_gate_is_the_failing_one_else_the_closest_to_its_bar() -> None:
    outputs = [_out("a", "dense", sqnr=31.0), _out("b", "dense", sqnr=45.0)]
    declared = [OutputSpec(name="a", kind="dense"), OutputSpec(name="b", kind="dense")]
    gates = _gates(_modes(outputs), _modes(outputs), declared, GatesSpec(), pairs=False)
    assert worst_gate(gates).output == "a"
    failing = _gates(_modes([_out("a", "dense", sqnr=31.0), _out("b", "dense", sqnr=29.0)]), _modes(outputs),
                     declared, GatesSpec(), pairs=False)  # fmt: skip
    assert worst_gate(failing).output == "b"


def test_gate_table_rows_and_failure_messages_name_output_value_and_bar() -> None:
    gates = _gates(_mode(mean=0.95))
    variant = VariantResult(
        variant="int8-qdq", file="m.onnx", sha256="0" * 64, size_bytes=1, size_ratio=0.25,
        modes={"reference": _mode(mean=0.95)}, gate_mode="reference", gates=gates, passed=False, details={},
    )  # fmt: skip
    rows = format_gate_table([variant])
    assert len(GATE_TABLE_HEADER) == len(rows[0])
    assert rows[0][:3] == ["int8-qdq", "emb", "min_mean_cosine"] and rows[0][-1] == "FAIL"
    (message,) = failure_messages("int8-qdq", gates)
    assert message.startswith("int8-qdq [emb]: mean cosine vs FP32 is 0.9500") and "reference mode" in message
