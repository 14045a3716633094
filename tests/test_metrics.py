"""Every metric against a case small enough to compute by hand (numbers in the comments)."""

from __future__ import annotations

import math
import os
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
