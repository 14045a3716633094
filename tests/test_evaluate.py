"""One output compared by its kind: each kind gets its own metrics, and nothing it has no data for."""

from __future__ import annotations

import numpy as np
import pytest

from packager.validate.evaluate import EvaluationData, OutputPlan, output_metrics


def _data(pairs: np.ndarray | None = None, labels: np.ndarray | None = None) -> EvaluationData:
    return EvaluationData(np.zeros((4, 1)), pairs, labels, None, None)


RNG = np.random.default_rng(0)
REF = RNG.normal(0, 1, (4, 10)).astype(np.float32)


def test_every_kind_gets_cosine_and_the_dense_statistics() -> None:
    m = output_metrics(OutputPlan("y"), REF, REF * 1.01, _data())
    assert m.kind == "generic" and m.cosine.mean == pytest.approx(1.0)
    assert m.sqnr_db == pytest.approx(40.0, abs=1e-4)  # noise is 1% of the signal: 20*log10(100)
    assert m.max_abs == pytest.approx(float(np.abs(REF * 0.01).max()), rel=1e-5)
    assert m.top1_agreement is None and m.verification is None and m.mask_iou is None


def test_logits_get_top_k_agreement_and_kl_of_the_softmax() -> None:
    swapped = REF.copy()
    top = REF[0].argmax()
    swapped[0, top] = REF[0].min() - 1  # sample 0's top class drops to the bottom
    m = output_metrics(OutputPlan("logits", "logits"), REF, swapped, _data())
    assert m.top1_agreement == pytest.approx(0.75) and m.top5_agreement == pytest.approx(0.75)
    assert m.kl_divergence is not None and m.kl_divergence > 0


def test_classification_with_fewer_than_five_classes_has_no_top5() -> None:
    probs = np.asarray([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    m = output_metrics(OutputPlan("p", "classification"), probs, probs, _data())
    assert m.top1_agreement == 1.0 and m.top5_agreement is None and m.kl_divergence == pytest.approx(0.0)


def test_dense_probability_maps_get_mask_iou_at_their_threshold() -> None:
    ref = np.asarray([[[0.9, 0.9], [0.1, 0.1]]], np.float32)
    cand = np.asarray([[[0.9, 0.2], [0.1, 0.1]]], np.float32)
    m = output_metrics(OutputPlan("prob", "dense", mask_threshold=0.5), ref, cand, _data())
    assert m.mask_iou == pytest.approx(0.5)
    assert output_metrics(OutputPlan("prob", "dense"), ref, cand, _data()).mask_iou is None


def test_embedding_without_pairs_has_no_verification() -> None:
    m = output_metrics(OutputPlan("emb", "embedding", "l2"), REF, REF, _data())
    assert m.verification is None and m.decision_flips is None and m.cosine.mean == pytest.approx(1.0)


def test_embedding_with_pairs_gets_auc_and_flips() -> None:
    pairs = np.asarray([[0, 1], [2, 3], [0, 2]])
    labels = np.asarray([1, 0, 0])
    m = output_metrics(OutputPlan("emb", "embedding", "l2"), REF, REF, _data(pairs, labels))
    assert m.verification is not None and m.decision_flips == 0.0


def test_l2_normalise_compares_what_the_app_uses() -> None:
    scaled = REF * np.asarray([[2.0], [3.0], [0.5], [1.0]], np.float32)  # same directions
    assert output_metrics(OutputPlan("e", "embedding", "l2"), REF, scaled, _data()).sqnr_db == 80.0
    assert output_metrics(OutputPlan("e", "embedding", "none"), REF, scaled, _data()).sqnr_db < 10.0
