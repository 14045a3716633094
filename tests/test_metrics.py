"""Every metric against a case small enough to compute by hand (numbers in the comments)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from packager.validate import metrics
from packager.validate.metrics import (
    artifact_size,
    best_accuracy,
    cosine_stats,
    decision_flips,
    far_key,
    latency,
    pair_scores,
    roc_auc,
    roc_curve,
    tar_at_far,
    verification,
)

# --- cosine ----------------------------------------------------------------------------------------


def test_cosine_stats_of_known_vectors() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    cand = np.array([[2.0, 0.0], [1.0, 1.0], [-1.0, -1.0]])  # cosines 1, 1/sqrt(2), -1
    stats = cosine_stats(ref, cand)
    assert stats.mean == pytest.approx((1 + 1 / math.sqrt(2) - 1) / 3)
    assert stats.min == pytest.approx(-1.0)
    assert stats.count == 3


def test_cosine_p1_is_the_first_percentile() -> None:
    c = np.arange(101) / 100.0  # cosines 0.00, 0.01, ..., 1.00: p1 is 0.01
    ref = np.tile([1.0, 0.0], (101, 1))
    cand = np.stack([c, np.sqrt(1 - c**2)], axis=1)
    assert cosine_stats(ref, cand).p1 == pytest.approx(0.01)


def test_cosine_flattens_trailing_dims() -> None:
    ref = np.array([[[1.0, 0.0]], [[0.0, 3.0]]])  # [2, 1, 2]
    cand = np.array([[1.0, 0.0], [0.0, 1.0]])  # [2, 2]
    assert cosine_stats(ref, cand).mean == pytest.approx(1.0)


def test_cosine_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        cosine_stats(np.ones((3, 4)), np.ones((2, 4)))


def test_cosine_non_finite_candidate_row_scores_zero() -> None:
    ref = np.ones((2, 3))
    cand = np.array([[1.0, 1.0, 1.0], [np.inf, 1.0, 1.0]])
    stats = cosine_stats(ref, cand)
    assert (stats.mean, stats.min) == (pytest.approx(0.5), 0.0)


def test_cosine_non_finite_reference_raises() -> None:
    with pytest.raises(ValueError, match="reference"):
        cosine_stats(np.array([[np.nan, 1.0]]), np.array([[1.0, 1.0]]))


def test_cosine_zero_rows_agree_only_with_zero_rows() -> None:
    ref = np.array([[0.0, 0.0], [0.0, 0.0]])
    cand = np.array([[0.0, 0.0], [1.0, 0.0]])
    stats = cosine_stats(ref, cand)
    assert (stats.mean, stats.min) == (0.5, 0.0)


def test_pair_scores_are_cosines_of_indexed_rows() -> None:
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    scores = pair_scores(emb, np.array([[0, 1], [0, 2], [2, 2]]))
    np.testing.assert_allclose(scores, [0.0, 1 / math.sqrt(2), 1.0])


def test_pair_index_out_of_range_raises() -> None:
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        pair_scores(np.ones((2, 4)), np.array([[0, 2]]))


# --- ROC, AUC --------------------------------------------------------------------------------------


def test_roc_curve_groups_tied_scores_into_one_step() -> None:
    fpr, tpr, thresholds = roc_curve(np.array([0.9, 0.8, 0.8, 0.7]), np.array([1, 1, 0, 0]))
    np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.8, 0.7])
    np.testing.assert_array_equal(tpr, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(fpr, [0.0, 0.0, 0.5, 1.0])


# Genuine 0.9 beats all 3 impostors (3); genuine 0.8 ties impostor 0.8 (1/2) and beats 0.6, 0.5 (2);
# genuine 0.7 beats 0.6 and 0.5 (2). U = 7.5 of 3 * 3 pairs.
AUC_SCORES = np.array([0.9, 0.8, 0.8, 0.7, 0.6, 0.5])
AUC_LABELS = np.array([1, 1, 0, 1, 0, 0])


def test_auc_counts_ties_as_half() -> None:
    assert roc_auc(AUC_SCORES, AUC_LABELS) == pytest.approx(7.5 / 9)


def test_auc_equals_area_under_roc_curve() -> None:
    fpr, tpr, _ = roc_curve(AUC_SCORES, AUC_LABELS)
    assert roc_auc(AUC_SCORES, AUC_LABELS) == pytest.approx(np.trapz(tpr, fpr))


def test_auc_of_all_tied_scores_is_one_half() -> None:
    assert roc_auc(np.full(6, 0.3), np.array([1, 0, 1, 0, 1, 0])) == 0.5


def test_auc_ignores_input_order() -> None:
    order = np.array([3, 0, 5, 2, 1, 4])
    assert roc_auc(AUC_SCORES[order], AUC_LABELS[order]) == pytest.approx(7.5 / 9)


@pytest.mark.parametrize(
    ("labels", "message"),
    [(np.zeros(6), "no positive"), (np.ones(6), "no negative"), (np.array([1, 0, 2, 0, 1, 0]), "labels")],
)
def test_auc_rejects_unusable_labels(labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        roc_auc(AUC_SCORES, labels)


def test_auc_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="equal length"):
        roc_auc(AUC_SCORES, AUC_LABELS[:5])


# --- TAR@FAR -----------------------------------------------------------------------------------------


def _impostors(low: int, high: list[float]) -> np.ndarray:
    return np.r_[np.linspace(0.0, 0.5, low), high]


def test_tar_at_far_takes_the_loosest_threshold_within_the_far() -> None:
    # 1000 impostors, one at 0.9 and one at 0.5: FAR 1e-3 allows exactly 1 false accept, so the
    # threshold slides down past 0.9 and the genuine 0.85, and stops above the impostor at 0.5
    # (the genuine 0.45 below it stays rejected): 5 of 10.
    genuine = np.array([0.95, 0.92, 0.91, 0.9, 0.85, 0.45, 0.2, 0.1, 0.05, 0.0])
    impostor = np.r_[np.linspace(0.0, 0.4, 998), 0.5, 0.9]
    scores = np.r_[genuine, impostor]
    labels = np.r_[np.ones(10), np.zeros(1000)]
    assert tar_at_far(scores, labels, 1e-3) == 0.5


def test_tar_at_far_never_splits_a_tie_to_fit_the_far() -> None:
    # Two impostors tie at 0.9 and only one false accept is allowed: 0.9 is not accepted at all.
    genuine = np.array([0.95, 0.9, 0.85])
    scores = np.r_[genuine, _impostors(998, [0.9, 0.9])]
    labels = np.r_[np.ones(3), np.zeros(1000)]
    assert tar_at_far(scores, labels, 1e-3) == pytest.approx(1 / 3)


def test_tar_at_far_is_none_with_fewer_impostors_than_one_over_far() -> None:
    scores = np.r_[[0.9, 0.8], _impostors(999, [])]
    labels = np.r_[[1, 1], np.zeros(999)]
    assert tar_at_far(scores, labels, 1e-3) is None


def test_tar_at_far_is_a_number_at_exactly_one_over_far_impostors() -> None:
    scores = np.r_[[0.9, 0.8], _impostors(1000, [])]
    labels = np.r_[[1, 1], np.zeros(1000)]
    assert tar_at_far(scores, labels, 1e-3) == 1.0


def test_min_negatives_rounds_up() -> None:
    assert (metrics.min_negatives(1e-3), metrics.min_negatives(1e-4), metrics.min_negatives(3e-4)) == (
        1000,
        10000,
        3334,
    )


# --- best accuracy, flips ----------------------------------------------------------------------------


def test_best_accuracy_picks_strictest_best_cut_and_midpoint_threshold() -> None:
    # Accepting the top 2 or the top 4 both get 5 of 6 right; the stricter cut wins, and the
    # threshold is halfway between the lowest accepted (0.8) and the highest rejected (0.7).
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 1, 0, 1, 0, 0])
    accuracy, threshold = best_accuracy(scores, labels)
    assert accuracy == pytest.approx(5 / 6)
    assert threshold == pytest.approx(0.75)


def test_best_accuracy_threshold_reproduces_the_accuracy() -> None:
    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(0.6, 0.15, 300), rng.normal(0.1, 0.15, 700)]
    labels = np.r_[np.ones(300), np.zeros(700)]
    accuracy, threshold = best_accuracy(scores, labels)
    assert np.mean((scores >= threshold) == labels.astype(bool)) == accuracy


def test_decision_flips_counts_changed_decisions_with_ties_accepted() -> None:
    ref = np.array([0.2, 0.4, 0.5, 0.9])  # at 0.4: reject, accept, accept, accept
    cand = np.array([0.3, 0.39, 0.4, 0.9])  # at 0.4: reject, reject, accept, accept
    assert decision_flips(ref, cand, 0.4) == 0.25


def test_decision_flips_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="equal in length"):
        decision_flips(np.ones(3), np.ones(4), 0.5)


# --- verification record -----------------------------------------------------------------------------


def test_far_key_is_short_scientific() -> None:
    assert [far_key(f) for f in (1e-3, 1e-4, 5e-4, 1.5e-3)] == ["1e-3", "1e-4", "5e-4", "1.5e-3"]


def test_verification_collects_metrics_and_marks_unresolvable_far() -> None:
    scores = np.r_[[0.9, 0.8], _impostors(1000, [])]
    labels = np.r_[[1, 1], np.zeros(1000)]
    v = verification(scores, labels)
    assert (v.positives, v.negatives) == (2, 1000)
    assert v.tar_at_far == {"1e-3": 1.0, "1e-4": None}
    assert v.auc == 1.0 and v.accuracy == 1.0


def test_verification_thins_the_stored_roc_but_keeps_its_ends() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random(5000)
    labels = (rng.random(5000) < 0.3).astype(int)
    v = verification(scores, labels)
    assert len(v.roc_fpr) == len(v.roc_tpr) <= metrics.ROC_MAX_POINTS
    assert (v.roc_fpr[0], v.roc_tpr[0], v.roc_fpr[-1], v.roc_tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(v.roc_fpr) >= 0)


# --- latency, size -----------------------------------------------------------------------------------


def test_latency_percentiles_in_milliseconds() -> None:
    lat = latency([0.050, 0.010, 0.030, 0.020, 0.040], threads=2)
    # Linear interpolation: p90 sits 0.6 of the way from 40 ms to 50 ms.
    assert (lat.p50_ms, lat.p90_ms, lat.runs, lat.threads) == (pytest.approx(30.0), pytest.approx(46.0), 5, 2)


def test_latency_needs_runs() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        latency([], threads=1)


def test_artifact_size_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"x" * 123)
    assert artifact_size(path) == 123


def test_artifact_size_of_a_folder_sums_its_files_but_not_symlinks(tmp_path: Path) -> None:
    package = tmp_path / "Model.mlpackage"
    (package / "Data" / "weights").mkdir(parents=True)
    (package / "Manifest.json").write_bytes(b"m" * 10)
    (package / "Data" / "weights" / "weight.bin").write_bytes(b"w" * 20)
    os.symlink(package / "Manifest.json", package / "link.json")
    assert artifact_size(package) == 30


def test_artifact_size_of_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        artifact_size(tmp_path / "missing.ort")


# --- outputs by kind: SQNR, dense stats ------------------------------------------------------------

CAP = metrics.SQNR_CAP_DB


def test_sqnr_pools_signal_and_noise_over_all_samples() -> None:
    # Signal 6^2 + 8^2 = 100 (the zero sample adds none), noise 1^2 = 1: 10*log10(100) = 20 dB.
    ref = np.array([[6.0, 8.0], [0.0, 0.0]])
    cand = np.array([[6.0, 8.0], [1.0, 0.0]])
    assert metrics.sqnr_db(ref, cand) == 20.0


def test_sqnr_of_an_exact_match_is_the_cap() -> None:
    assert metrics.sqnr_db(np.ones((2, 3)), np.ones((2, 3))) == CAP


def test_sqnr_clips_to_minus_cap_for_zero_signal_or_huge_noise() -> None:
    assert metrics.sqnr_db(np.zeros((1, 2)), np.array([[0.0, 1e-3]])) == -CAP
    assert metrics.sqnr_db(np.array([[1e-5]]), np.array([[1.0]])) == -CAP  # about -100 dB


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_sqnr_of_a_non_finite_candidate_fails_low(bad: float) -> None:
    cand = np.ones((3, 4))
    cand[1, 2] = bad
    assert metrics.sqnr_db(np.ones((3, 4)), cand) == -CAP


def test_sqnr_of_a_non_finite_reference_raises() -> None:
    with pytest.raises(ValueError, match="reference"):
        metrics.sqnr_db(np.array([[np.inf, 1.0]]), np.ones((1, 2)))


def test_dense_stats_psnr_uses_the_reference_range_and_pooled_mse() -> None:
    # peak = 10 - 0 over the whole set; one error of 1 among 10 elements: MSE 0.1 -> 10*log10(100/0.1).
    ref = np.array([[0.0, 10.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0, 5.0]])
    cand = ref.copy()
    cand[1, 0] = 6.0
    assert metrics.dense_stats(ref, cand).psnr_db == pytest.approx(30.0)


def test_dense_stats_min_sqnr_is_the_worst_sample_and_sqnr_is_pooled() -> None:
    # Sample 0 exact (+cap); sample 1 signal 125, noise 1; pooled signal 300, noise 1.
    ref = np.array([[0.0, 10.0, 5.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0, 5.0]])
    cand = ref.copy()
    cand[1, 0] = 6.0
    stats = metrics.dense_stats(ref, cand)
    assert stats.min_sqnr_db == pytest.approx(10 * math.log10(125))
    assert stats.sqnr_db == pytest.approx(10 * math.log10(300))


def test_dense_stats_max_abs_rel_l2_and_cosine() -> None:
    ref = np.array([[3.0, 4.0]])  # ||ref|| = 5
    cand = np.array([[3.0, 3.5]])  # error (0, 0.5): max 0.5, relative 0.5 / 5
    stats = metrics.dense_stats(ref, cand)
    assert (stats.max_abs, stats.rel_l2) == (0.5, pytest.approx(0.1))
    assert stats.cosine_mean == pytest.approx(23 / (5 * math.sqrt(21.25)))


def test_dense_stats_of_a_non_finite_candidate_fails_every_number() -> None:
    cand = np.ones((2, 3))
    cand[0, 0] = np.nan
    stats = metrics.dense_stats(np.ones((2, 3)), cand)
    assert (stats.sqnr_db, stats.min_sqnr_db, stats.psnr_db) == (-CAP, -CAP, -CAP)
    assert (stats.max_abs, stats.rel_l2, stats.cosine_mean) == (math.inf, math.inf, 0.5)


def test_dense_stats_is_a_frozen_dataclass_of_floats() -> None:
    stats = metrics.dense_stats(np.ones((2, 3)), np.ones((2, 3)))
    assert all(type(v) is float for v in vars(stats).values())
    with pytest.raises(AttributeError):
        stats.sqnr_db = 0.0  # type: ignore[misc]


# --- top-k, KL, IoU --------------------------------------------------------------------------------

# FP32 top-1: class 0, 1, 3. Candidate ranks them 1st, 2nd and 4th.
TOPK_REF = np.array([[5.0, 1.0, 0.0, 0.0], [0.0, 3.0, 1.0, 0.0], [0.0, 0.0, 0.0, 9.0]])
TOPK_CAND = np.array([[4.0, 2.0, 0.0, 0.0], [3.0, 2.0, 1.0, 0.0], [5.0, 4.0, 3.0, 2.0]])


@pytest.mark.parametrize(("k", "expected"), [(1, 1 / 3), (2, 2 / 3), (3, 2 / 3), (4, 1.0)])
def test_topk_agreement_on_a_handmade_logit_table(k: int, expected: float) -> None:
    assert metrics.topk_agreement(TOPK_REF, TOPK_CAND, k) == pytest.approx(expected)


def test_topk_ties_go_to_the_lowest_class_index() -> None:
    # A collapsed candidate ranks class 0 first, then class 1: only the sample whose FP32 class is 0
    # agrees at top-1, and both do at top-2.
    ref = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    cand = np.zeros((2, 3))
    assert (metrics.topk_agreement(ref, cand, 1), metrics.topk_agreement(ref, cand, 2)) == (0.5, 1.0)


def test_topk_flattens_trailing_dims() -> None:
    assert metrics.topk_agreement(TOPK_REF[:, None, :], TOPK_CAND, 2) == pytest.approx(2 / 3)


def test_topk_non_finite_candidate_sample_disagrees() -> None:
    assert metrics.topk_agreement(np.array([[1.0, 0.0]]), np.array([[np.nan, 0.0]]), 1) == 0.0


@pytest.mark.parametrize("k", [0, 5])
def test_topk_k_outside_the_class_count_raises(k: int) -> None:
    with pytest.raises(ValueError, match=r"\[1, 4\]"):
        metrics.topk_agreement(TOPK_REF, TOPK_CAND, k)


# P = (1/2, 1/2), Q = (1/4, 3/4): KL = 1/2 ln(2) + 1/2 ln(2/3) = 1/2 ln(4/3).
KL_PQ = 0.5 * math.log(4 / 3)


def test_kl_of_known_probabilities_renormalises_them() -> None:
    kl = metrics.kl_divergence(np.array([[1.0, 1.0]]), np.array([[1.0, 3.0]]), logits=False)
    assert kl == pytest.approx(KL_PQ)


def test_kl_of_logits_applies_softmax() -> None:
    ref = np.array([[0.0, 0.0]])
    cand = np.array([[0.0, math.log(3.0)]])
    assert metrics.kl_divergence(ref, cand, logits=True) == pytest.approx(KL_PQ)


def test_kl_of_huge_logits_is_stable() -> None:
    # softmax is shift-invariant; a naive exp(1000) overflows.
    ref = np.array([[1000.0, 1000.0]])
    cand = np.array([[-1000.0, -1000.0 + math.log(3.0)]])
    assert metrics.kl_divergence(ref, cand, logits=True) == pytest.approx(KL_PQ)


def test_kl_terms_where_the_reference_is_zero_count_nothing() -> None:
    # P = (1, 0), Q = (1/2, 1/2): KL = 1 * ln(1 / (1/2)) = ln 2.
    kl = metrics.kl_divergence(np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]]), logits=False)
    assert kl == pytest.approx(math.log(2.0))


def test_kl_floors_a_ruled_out_class_at_eps() -> None:
    # P = (1/2, 1/2), Q = (1, 0 -> eps): 1/2 ln(1/2) + 1/2 ln(1/2 / eps).
    kl = metrics.kl_divergence(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]]), logits=False)
    assert kl == pytest.approx(0.5 * math.log(0.5) + 0.5 * math.log(0.5 / metrics.KL_EPS))


@pytest.mark.parametrize("logits", [True, False])
@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_kl_of_a_non_finite_candidate_sample_is_the_maximum(bad: float, logits: bool) -> None:
    ref = np.array([[0.5, 1.0], [0.5, 1.0]])
    cand = np.array([[0.5, 1.0], [bad, 1.0]])  # sample 0 exact (0), sample 1 the maximum
    assert metrics.kl_divergence(ref, cand, logits=logits) == pytest.approx(-math.log(metrics.KL_EPS) / 2)


def test_kl_of_negative_probabilities_raises() -> None:
    with pytest.raises(ValueError, match="logits=True"):
        metrics.kl_divergence(np.array([[0.5, 0.5]]), np.array([[1.5, -0.5]]), logits=False)


def test_mask_iou_of_two_small_masks() -> None:
    # Masks at 0.5 (inclusive): ref {(0,0), (0,1)}, cand {(0,0), (1,0)}: 1 shared of 3 -> 1/3.
    ref = np.array([[[[0.9, 0.5], [0.1, 0.2]]]])  # [1, 1, 2, 2]
    cand = np.array([[[[0.8, 0.4], [0.7, 0.0]]]])
    assert metrics.mask_iou(ref, cand, 0.5) == pytest.approx(1 / 3)


def test_mask_iou_both_empty_scores_one_and_one_empty_zero() -> None:
    ref = np.array([[0.0, 0.0], [0.0, 0.0]])
    cand = np.array([[0.0, 0.0], [0.0, 1.0]])  # sample 0 both empty (1), sample 1 only cand (0)
    assert metrics.mask_iou(ref, cand, 0.5) == 0.5


def test_mask_iou_of_a_non_finite_candidate_sample_is_zero() -> None:
    # Its NaN would otherwise give an empty mask, matching the empty reference perfectly.
    assert metrics.mask_iou(np.zeros((1, 2)), np.array([[np.nan, 0.0]]), 0.5) == 0.0


@pytest.mark.parametrize(
    "metric",
    [
        metrics.sqnr_db,
        metrics.dense_stats,
        lambda r, c: metrics.topk_agreement(r, c, 1),
        lambda r, c: metrics.kl_divergence(r, c, logits=True),
        lambda r, c: metrics.mask_iou(r, c, 0.5),
    ],
    ids=["sqnr", "dense", "topk", "kl", "iou"],
)
def test_output_metrics_reject_shape_mismatch(metric: Callable[[np.ndarray, np.ndarray], object]) -> None:
    with pytest.raises(ValueError, match=r"shape \(3, 4\).*\(3, 5\)"):
        metric(np.ones((3, 4)), np.ones((3, 5)))
