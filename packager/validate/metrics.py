"""The one definition of every number packager reports (DESIGN.md §4), in plain numpy.

Gates, the manifest and the report all read these functions' results, so "mean cosine" or
"TAR@FAR=1e-3" means exactly one thing everywhere. Conventions shared by all functions:

* A pair is *accepted* (same identity) when ``score >= threshold``.
* Labels are 1 (same, "genuine") / 0 (different, "impostor"); booleans are accepted too.
* Bad input (mismatched shapes, no positives, no negatives, non-finite scores) raises ``ValueError``
  with the shapes or counts in the message: a silently wrong metric is worse than a stopped build.
* Output comparisons take ``reference`` (FP32) and ``candidate`` arrays [N, ...] of any real dtype,
  computed in float64: rows are samples, trailing dims flattened (a classifier's class axis last).
  A non-finite reference raises; a candidate sample with NaN/inf scores the metric's worst value
  and is logged: an FP16 overflow must fail a gate, never crash the build or look perfect.
"""

from __future__ import annotations

import logging
import math
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from packager.results import CosineStats, Latency, Verification

log = logging.getLogger(__name__)

DEFAULT_FARS: tuple[float, ...] = (1e-3, 1e-4)
ROC_MAX_POINTS = 200
"""Stored ROC curves are thinned to this many points: enough for a plot, small in results.json."""


# --- cosine ---------------------------------------------------------------------------------------


def _rows(values: np.ndarray, name: str) -> np.ndarray:
    """Samples as rows of float64, trailing dims flattened (an [N,1,128] output equals an [N,128] one)."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 0 or a.size == 0:
        raise ValueError(f"{name} must hold at least one sample (rows are samples), got shape {a.shape}")
    return a.reshape(a.shape[0], -1)


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine; a row that is zero or non-finite on either side scores 0 (no agreement)."""
    finite = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    a = np.where(finite[:, None], a, 0.0)
    b = np.where(finite[:, None], b, 0.0)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    cos = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
    return np.clip(cos, -1.0, 1.0)


def _pair(reference: np.ndarray, candidate: np.ndarray, failed: str) -> tuple[np.ndarray, ...]:
    """``(ref, cand, ok)``: rows of one shape; ``ok``: finite candidate rows (others logged as ``failed``)."""
    ref = _rows(reference, "reference")
    cand = _rows(candidate, "candidate")
    if ref.shape != cand.shape:
        raise ValueError(
            f"reference outputs have shape {np.shape(reference)}, candidate outputs {np.shape(candidate)}; "
            "compare outputs of the same inputs in the same layout"
        )
    bad_ref = ~np.isfinite(ref).all(axis=1)
    if bad_ref.any():
        raise ValueError(
            f"FP32 reference outputs are NaN/inf for rows {np.flatnonzero(bad_ref)[:10].tolist()}; "
            "check the input preprocessing and the source model"
        )
    ok = np.isfinite(cand).all(axis=1)
    if not ok.all():
        log.warning("candidate outputs are NaN/inf for %d of %d inputs (%s)", (~ok).sum(), len(ok), failed)
    return ref, cand, ok


def _cosines(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    cos = _row_cosine(ref, cand)
    cos[~ref.any(axis=1) & ~cand.any(axis=1)] = 1.0  # NaN is truthy: a NaN row is never zero
    return cos


def cosine_stats(reference: np.ndarray, candidate: np.ndarray) -> CosineStats:
    """Per-sample cosine of candidate outputs to FP32 outputs: mean, min and 1st percentile.

    ``p1`` (linear interpolation, numpy's default) shows the tail a mean hides: a variant that is
    perfect on 98% of faces and broken on 2% has a fine mean and a terrible p1.

    Rules for degenerate rows: a candidate row with NaN/inf scores 0 (an FP16 overflow must fail
    the gate, not crash the build or vanish from the mean); a row that is all zeros in *both* outputs
    scores 1 (identical outputs agree); a zero row on one side only scores 0. A non-finite
    *reference* raises: the FP32 model itself is broken or the input preprocessing is wrong.
    """
    cos = _cosines(*_pair(reference, candidate, "cosine 0")[:2])
    return CosineStats(
        mean=float(cos.mean()), min=float(cos.min()), p1=float(np.percentile(cos, 1)), count=len(cos)
    )


def pair_scores(embeddings: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Cosine similarity of ``embeddings[i]`` and ``embeddings[j]`` for each row ``[i, j]`` of ``pairs``.

    Scores come from one model's embeddings so that FP32 and each variant are scored on the same
    pairs; zero or non-finite embeddings score 0 (see ``cosine_stats``).
    """
    emb = _rows(embeddings, "embeddings")
    idx = np.asarray(pairs)
    if idx.ndim != 2 or idx.shape[1] != 2:
        raise ValueError(f"pairs must have shape [P, 2] (index pairs), got {idx.shape}")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"pairs must be integer indices, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= len(emb)):
        raise ValueError(f"pair indices must be in [0, {len(emb)}) for {len(emb)} embeddings")
    idx = idx.astype(np.intp)
    return _row_cosine(emb[idx[:, 0]], emb[idx[:, 1]])


# --- verification ---------------------------------------------------------------------------------


def _scores_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores and labels must be 1-D and of equal length, got {s.shape} and {y.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain NaN/inf at {np.flatnonzero(~np.isfinite(s))[:10].tolist()}")
    if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 1 (same) or 0 (different)")
    y = y.astype(bool)
    if not y.any():
        raise ValueError(f"no positive pairs (label 1) among {len(y)}: verification needs genuine pairs")
    if y.all():
        raise ValueError(f"no negative pairs (label 0) among {len(y)}: verification needs impostor pairs")
    return s, y


def _roc_counts(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False/true accept counts at each distinct threshold, strictest first, starting at (+inf: 0, 0).

    Tied scores are accepted together, so a tie group is one ROC step, never split.
    """
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tps = np.cumsum(y_sorted)[ends]
    fps = ends + 1 - tps
    return np.r_[0, fps], np.r_[0, tps], np.r_[np.inf, s_sorted[ends]]


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``; point k accepts ``score >= thresholds[k]``, thresholds[0] is +inf."""
    s, y = _scores_labels(scores, labels)
    fps, tps, thresholds = _roc_counts(s, y)
    return fps / fps[-1], tps / tps[-1], thresholds


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC: the Mann-Whitney U statistic over (genuine, impostor) pairs of pairs.

    AUC = P(genuine score > impostor score) + 1/2 P(equal). Ties counting 1/2 is what makes a
    quantized model that collapses scores onto a few values lose AUC instead of gaining it.
    """
    s, y = _scores_labels(scores, labels)
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based rank, ties share the mean rank
    ranks = average_rank[inverse]
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def min_negatives(far: float) -> int:
    """Impostor pairs needed to resolve ``far``: ``ceil(1/far)``.

    With N impostors the false-accept rate moves in steps of 1/N; below N = 1/far the only FAR
    <= far is 0, and "TAR at FAR=0 on 300 pairs" is not the number the column claims to be.
    """
    if not 0.0 < far < 1.0:
        raise ValueError(f"FAR must be in (0, 1), got {far}")
    return math.ceil(1.0 / far - 1e-9)


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> float | None:
    """True-accept rate at the loosest threshold whose false-accept rate is still ``<= far``.

    Conservative: the threshold is the lowest observed score at which at most ``floor(far * N)``
    impostors are accepted (tie groups enter together, so a tie never sneaks the FAR over). Returns
    ``None`` when there are fewer impostors than ``min_negatives(far)``: never invent a number.
    """
    need = min_negatives(far)
    s, y = _scores_labels(scores, labels)
    n_neg = int((~y).sum())
    if n_neg < need:
        return None
    fps, tps, _ = _roc_counts(s, y)
    allowed = math.floor(far * n_neg + 1e-9)
    k = int(np.flatnonzero(fps <= allowed)[-1])
    return float(tps[k] / tps[-1])


def best_accuracy(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(accuracy, threshold)`` of the best single cut ``score >= threshold``.

    Among equally accurate cuts the strictest (fewest false accepts) wins. The threshold returned is
    the midpoint between the lowest accepted and the highest rejected score, so no sample sits on
    the boundary; accepting everything returns the lowest score, rejecting everything the next float
    above the highest.
    """
    s, y = _scores_labels(scores, labels)
    fps, tps, thresholds = _roc_counts(s, y)
    n_neg = fps[-1]
    correct = tps + (n_neg - fps)
    k = int(np.argmax(correct))
    distinct = thresholds[1:]
    if k == 0:
        threshold = float(np.nextafter(distinct[0], np.inf))
    elif k == len(distinct):
        threshold = float(distinct[-1])
    else:
        low_accepted, high_rejected = distinct[k - 1], distinct[k]
        mid = (low_accepted + high_rejected) / 2.0
        threshold = float(mid if mid > high_rejected else low_accepted)
    return float(correct[k] / len(s)), threshold


def far_key(far: float) -> str:
    """``1e-3`` -> ``"1e-3"``: the key under ``Verification.tar_at_far`` and the report's column."""
    return np.format_float_scientific(far, trim="-", exp_digits=1)


def _thin_roc(fpr: np.ndarray, n_neg: int, max_points: int) -> np.ndarray:
    """Indices keeping at most ``max_points`` ROC points, even on both a linear and a log FAR axis."""
    if len(fpr) <= max_points:
        return np.arange(len(fpr))
    half = (max_points - 2) // 2
    grid = np.r_[np.linspace(0.0, 1.0, half), np.logspace(math.log10(1.0 / n_neg), 0.0, half)]
    last_at_or_below = np.searchsorted(fpr, grid, side="right") - 1  # top of each vertical step
    return np.unique(np.r_[0, last_at_or_below, len(fpr) - 1])


def verification(
    scores: np.ndarray, labels: np.ndarray, fars: Sequence[float] = DEFAULT_FARS
) -> Verification:
    """All pair metrics of one model in one record; the ROC is thinned to ``ROC_MAX_POINTS``."""
    keys = [far_key(f) for f in fars]
    if len(set(keys)) != len(keys):
        raise ValueError(f"FARs {list(fars)} repeat")
    s, y = _scores_labels(scores, labels)
    fps, tps, _ = _roc_counts(s, y)
    n_neg, n_pos = int(fps[-1]), int(tps[-1])
    fpr, tpr = fps / n_neg, tps / n_pos
    keep = _thin_roc(fpr, n_neg, ROC_MAX_POINTS)
    accuracy, threshold = best_accuracy(s, y)
    return Verification(
        auc=roc_auc(s, y),
        accuracy=accuracy,
        best_threshold=threshold,
        tar_at_far={key: tar_at_far(s, y, far) for key, far in zip(keys, fars, strict=True)},
        roc_fpr=fpr[keep].tolist(),
        roc_tpr=tpr[keep].tolist(),
        positives=n_pos,
        negatives=n_neg,
    )


def decision_flips(ref_scores: np.ndarray, cand_scores: np.ndarray, threshold: float) -> float:
    """Share of pairs whose same/different decision at ``threshold`` differs from FP32's.

    The number an app team feels: an AUC can hold while users near the threshold start failing.
    """
    ref = np.asarray(ref_scores, dtype=np.float64)
    cand = np.asarray(cand_scores, dtype=np.float64)
    if ref.ndim != 1 or ref.shape != cand.shape or ref.size == 0:
        raise ValueError(
            f"score arrays must be 1-D, non-empty and equal in length, got {ref.shape}, {cand.shape}"
        )
    if not (np.isfinite(ref).all() and np.isfinite(cand).all() and math.isfinite(threshold)):
        raise ValueError("scores and threshold must be finite")
    return float(np.mean((ref >= threshold) != (cand >= threshold)))


# --- outputs by kind: dense maps, class scores, masks ---------------------------------------------

SQNR_CAP_DB = 80.0
"""SQNR/PSNR are clipped to +-this: an exact match is +cap (not inf, so dB differences and
results.json stay finite); a failure (zero signal with noise, NaN/inf candidate) is -cap."""
KL_EPS = 1e-10
"""Candidate probabilities are floored here: per-sample KL lies in [0, ln(1/KL_EPS)] ~ [0, 23] nats."""


def _db(signal: np.ndarray | float, noise: np.ndarray | float) -> np.ndarray:
    """``10*log10(signal/noise)`` clipped to +-cap; zero noise is +cap even with zero signal."""
    signal, noise = np.asarray(signal, dtype=np.float64), np.asarray(noise, dtype=np.float64)
    with np.errstate(divide="ignore"):
        ratio = np.divide(signal, noise, out=np.full_like(signal, np.inf), where=noise > 0)
        return np.clip(10.0 * np.log10(ratio), -SQNR_CAP_DB, SQNR_CAP_DB)


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Pooled signal-to-quantization-noise ratio, dB: ``10*log10(sum(ref**2) / sum((ref-cand)**2))``.

    Float64 sums over every element of all samples [N, ...], as in ONNX Runtime's quantization
    debugging tools (``qdq_loss_debug.compute_signal_to_quantization_noice_ratio``: ``20*log10(|x| /
    |x-y|)`` over the concatenated tensors), but clipped to +-``SQNR_CAP_DB`` where ORT floors the
    norms at float eps. Any NaN/inf in the candidate is -cap: it fails every SQNR gate.
    """
    ref, cand, ok = _pair(reference, candidate, f"SQNR -{SQNR_CAP_DB:g} dB")
    if not ok.all():
        return -SQNR_CAP_DB
    return float(_db(np.sum(ref**2), np.sum((ref - cand) ** 2)))


@dataclass(frozen=True)
class DenseStats:
    """Closeness of a dense output (feature map, embedding, image) to FP32; see ``dense_stats``."""

    sqnr_db: float
    min_sqnr_db: float
    psnr_db: float
    max_abs: float
    rel_l2: float
    cosine_mean: float


def dense_stats(reference: np.ndarray, candidate: np.ndarray) -> DenseStats:
    """Errors of candidate outputs [N, ...] against FP32 outputs, in float64.

    ``sqnr_db``: pooled, as ``sqnr_db``; ``min_sqnr_db``: the worst sample's own. ``psnr_db =
    10*log10(peak**2 / MSE)``, the standard definition (as scikit-image's ``peak_signal_noise_ratio(
    ref, cand, data_range=peak)``), with ``peak = max(ref) - min(ref)`` over the whole reference set
    and MSE pooled over all elements; clipped like SQNR. ``max_abs``: largest ``|ref - cand|``, in
    output units. ``rel_l2 = ||ref - cand||_2 / ||ref||_2`` pooled (inf for a zero reference with
    any error). ``cosine_mean``: mean per-sample cosine by ``cosine_stats``' rules. A NaN/inf
    candidate makes the pooled numbers -cap (dB) or inf, and its samples -cap.
    """
    ref, cand, ok = _pair(reference, candidate, "dense stats fail")
    err = np.where(ok[:, None], ref - cand, 0.0)
    signal, noise = np.sum(ref**2), np.sum(err**2)
    per_sample = np.where(ok, _db(np.sum(ref**2, axis=1), np.sum(err**2, axis=1)), -SQNR_CAP_DB)
    pooled = psnr = -SQNR_CAP_DB
    max_abs = rel_l2 = math.inf
    if ok.all():
        pooled = float(_db(signal, noise))
        psnr = float(_db((ref.max() - ref.min()) ** 2, noise / err.size))
        max_abs = float(np.abs(err).max())
        rel_l2 = math.sqrt(noise / signal) if signal > 0 else (math.inf if noise else 0.0)
    cos = float(_cosines(ref, cand).mean())
    return DenseStats(pooled, float(per_sample.min()), psnr, max_abs, rel_l2, cos)


def topk_agreement(reference: np.ndarray, candidate: np.ndarray, k: int) -> float:
    """Share of samples whose FP32 top-1 class is among the candidate's top ``k``; k=1 is top-1 agreement.

    Top-k accuracy (the ImageNet top-1/top-5 convention) with FP32's argmax as the label, on scores
    [N, C] (trailing dims flattened, class axis last). Ties go to the lower class index as in
    ``np.argmax``, also in the candidate's ranking: k=1 is ``argmax(cand) == argmax(ref)``, and
    collapsed (all-equal) scores do not agree. NaN/inf candidate samples disagree; k not in [1, C] raises.
    """
    ref, cand, ok = _pair(reference, candidate, "disagree")
    n, classes = ref.shape
    if not 1 <= k <= classes:
        raise ValueError(f"k must be in [1, {classes}] for outputs of shape {np.shape(reference)}, got {k}")
    top = ref.argmax(axis=1)
    at_top = cand[np.arange(n), top][:, None]
    ahead = (cand > at_top) | ((cand == at_top) & (np.arange(classes) < top[:, None]))
    return float(np.mean(ok & (ahead.sum(axis=1) < k)))


def _log_probs(x: np.ndarray, logits: bool) -> np.ndarray:
    if logits:  # log-softmax by log-sum-exp: exp never overflows
        shifted = x - x.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return np.log(x / x.sum(axis=1, keepdims=True))


def kl_divergence(reference: np.ndarray, candidate: np.ndarray, *, logits: bool) -> float:
    """Mean over samples of KL(P_ref || P_cand) = sum(p * ln(p / q)) over classes, in nats
    (Kullback & Leibler 1951), for [N, C] outputs (trailing dims flattened, class axis last).

    ``logits=True``: P = softmax(x), by log-sum-exp. ``logits=False``: probabilities, renormalised to
    sum 1 per sample as ``scipy.stats.entropy(p, q)`` does; negative values or a reference sample
    summing to 0 raise ``ValueError``. Terms with p = 0 are 0; q is floored at ``KL_EPS`` and each
    sample's KL clipped to [0, ln(1/KL_EPS)], the score of a NaN/inf or all-zero candidate sample.
    """
    worst = -math.log(KL_EPS)
    ref, cand, ok = _pair(reference, candidate, f"KL {worst:.1f} nats")
    if not logits and ((ref < 0).any() or (cand[ok] < 0).any() or not (ref.sum(axis=1) > 0).all()):
        raise ValueError(f"probabilities {np.shape(reference)} must be >= 0, FP32 rows > 0; or logits=True")
    with np.errstate(all="ignore"):
        log_p = _log_probs(ref, logits)
        log_q = np.maximum(_log_probs(cand, logits), math.log(KL_EPS))
        p = np.exp(log_p)
        kl = np.clip(np.where(p > 0, p * (log_p - log_q), 0.0).sum(axis=1), 0.0, worst)
    return float(np.where(ok & np.isfinite(kl), kl, worst).mean())


def mask_iou(reference: np.ndarray, candidate: np.ndarray, threshold: float) -> float:
    """Mean over samples [N, ...] of the IoU (Jaccard index, |A & B| / |A | B|; the PASCAL VOC
    segmentation measure) of the masks ``ref >= threshold`` and ``cand >= threshold``, per flattened sample.

    Both masks empty scores 1 (identical), one empty 0; a NaN/inf candidate sample scores 0.
    """
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    ref, cand, ok = _pair(reference, candidate, "IoU 0")
    a, b = ref >= threshold, cand >= threshold
    union = (a | b).sum(axis=1)
    iou = np.divide((a & b).sum(axis=1), union, out=np.ones(len(a)), where=union > 0)
    return float(np.where(ok, iou, 0.0).mean())


# --- latency and size -----------------------------------------------------------------------------


def latency(times_s: Sequence[float], threads: int) -> Latency:
    """p50/p90 in milliseconds of timed runs (warm-up already excluded by the caller)."""
    t = np.asarray(times_s, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"need a non-empty 1-D list of run times in seconds, got shape {t.shape}")
    if not np.isfinite(t).all() or (t < 0).any():
        raise ValueError("run times must be finite and non-negative seconds")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    ms = t * 1000.0
    return Latency(
        p50_ms=float(np.percentile(ms, 50)), p90_ms=float(np.percentile(ms, 90)), runs=t.size, threads=threads
    )


def artifact_size(path: Path) -> int:
    """Bytes on disk: a file's size, or for a folder (``.mlpackage``) the sum of its regular files.

    Symlinks inside a folder are not followed or counted: what ships is what is in the folder.
    """
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: artifact not found; was the build step that writes it run?")
    total = 0
    for root, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total
