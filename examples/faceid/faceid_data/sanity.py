"""FP32 figures for the generated pairs with onnxruntime: a smoke test of the data, not a gate.

The pairs without a hard view should separate almost perfectly; if they did not, the data (or the
preprocessing) would be wrong, and every quantization comparison built on it would be meaningless.
The hard views are there to make the whole set imperfect on purpose, so that AUC and TAR@FAR have
room to move when a quantized model is worse than FP32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort

from faceid_data.dataset import Pair


@dataclass(frozen=True)
class Figures:
    positives: int
    negatives: int
    mean_positive: float
    mean_negative: float
    mean_positive_real: float | None
    """Positives from different real photos only: augmented views of one photo are easy."""
    auc: float
    accuracy_at_threshold: float
    tar_at_far_1e3: float | None = None
    tar_at_far_1e4: float | None = None
    """None when there are too few negatives to resolve that FAR (as in packager's report)."""
    mean_positive_hard: float | None = None
    """Positives with at least one hard view."""
    auc_without_hard: float | None = None
    """ROC AUC on the pairs with no hard view: what the easy views alone would show."""

    def summary(self) -> str:
        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        return (
            f"mean cosine positives {self.mean_positive:.4f} (real-photo pairs "
            f"{fmt(self.mean_positive_real)}, with a hard view {fmt(self.mean_positive_hard)}), "
            f"negatives {self.mean_negative:.4f}, "
            f"ROC AUC {self.auc:.4f} (without hard views {fmt(self.auc_without_hard)}), "
            f"TAR@FAR=1e-3 {fmt(self.tar_at_far_1e3)}, TAR@FAR=1e-4 {fmt(self.tar_at_far_1e4)}, "
            f"accuracy@threshold {self.accuracy_at_threshold:.4f} "
            f"({self.positives} positive / {self.negatives} negative pairs)"
        )


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score_pos > score_neg) + 0.5 P(tie): the Mann-Whitney form of ROC AUC, no sklearn needed."""
    if positive.size == 0 or negative.size == 0:
        raise ValueError("ROC AUC needs at least one positive and one negative score")
    ordered = np.sort(negative)
    below = np.searchsorted(ordered, positive, side="left")
    not_above = np.searchsorted(ordered, positive, side="right")
    return float((below.sum() + 0.5 * (not_above - below).sum()) / (positive.size * negative.size))


def tar_at_far(positive: np.ndarray, negative: np.ndarray, far: float) -> float | None:
    """True-accept rate at the loosest threshold accepting at most ``floor(far * N)`` impostors.

    The same conservative definition as packager's report (ties enter together); None when there
    are fewer than ``ceil(1 / far)`` negatives, where the number would not mean what it says.
    """
    if negative.size < math.ceil(1.0 / far - 1e-9):
        return None
    allowed = math.floor(far * negative.size + 1e-9)
    cut = np.sort(negative)[::-1][allowed]  # the highest negative that must stay rejected
    return float(np.mean(positive > cut))


def session(model: Path) -> ort.InferenceSession:
    """SFace lists its weights as graph inputs, which blocks constant folding (1.7x slower here):
    drop those inputs in memory first, as packager's graph step does for the shipped model."""
    proto = onnx.load(str(model))
    weights = {init.name for init in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in weights]
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def embed(sess: ort.InferenceSession, images: list[np.ndarray], rgb: bool = True) -> np.ndarray:
    """L2-normalised embeddings; SFace takes RGB 0..255 NCHW and normalises internally."""
    name = sess.get_inputs()[0].name
    rows = []
    for image in images:
        pixels = image[:, :, ::-1] if rgb else image
        tensor = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)
        rows.append(sess.run(None, {name: tensor})[0][0])
    out = np.asarray(rows, dtype=np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def figures(
    sess: ort.InferenceSession,
    data_dir: Path,
    pairs: list[Pair],
    threshold: float,
    source_of: dict[str, str],
    rgb: bool = True,
    hard: Collection[str] = (),
) -> Figures:
    """Cosine statistics over ``pairs``; ``source_of`` maps an image to its photo (real vs augmented),
    ``hard`` lists the hard views."""
    paths = sorted({p.first for p in pairs} | {p.second for p in pairs})
    index = {rel: i for i, rel in enumerate(paths)}
    vectors = embed(sess, [cv2.imread(str(data_dir / rel), cv2.IMREAD_COLOR) for rel in paths], rgb)
    first = vectors[[index[p.first] for p in pairs]]
    second = vectors[[index[p.second] for p in pairs]]
    cosine = np.einsum("ij,ij->i", first, second)
    labels = np.array([p.label for p in pairs], dtype=bool)
    positive, negative = cosine[labels], cosine[~labels]
    real = np.array([p.label == 1 and source_of[p.first] != source_of[p.second] for p in pairs], dtype=bool)
    accuracy = float(np.mean((cosine >= threshold) == labels))
    hard_set = set(hard)
    with_hard = np.array([p.first in hard_set or p.second in hard_set for p in pairs], dtype=bool)
    easy_pos, easy_neg = cosine[labels & ~with_hard], cosine[~labels & ~with_hard]
    hard_pos = cosine[labels & with_hard]
    return Figures(
        positives=int(labels.sum()),
        negatives=int((~labels).sum()),
        mean_positive=float(positive.mean()),
        mean_negative=float(negative.mean()),
        mean_positive_real=float(cosine[real].mean()) if real.any() else None,
        auc=roc_auc(positive, negative),
        accuracy_at_threshold=accuracy,
        tar_at_far_1e3=tar_at_far(positive, negative, 1e-3),
        tar_at_far_1e4=tar_at_far(positive, negative, 1e-4),
        mean_positive_hard=float(hard_pos.mean()) if hard_pos.size else None,
        auc_without_hard=roc_auc(easy_pos, easy_neg)
        if with_hard.any() and easy_pos.size and easy_neg.size
        else None,
    )


def channel_agreement(
    sess: ort.InferenceSession, crops: list[np.ndarray], reference: Callable[[np.ndarray], np.ndarray]
) -> tuple[float, float]:
    """Lowest cosine to OpenCV's own SFace pipeline (which swaps BGR to RGB) with RGB vs BGR input.

    This is what pins ``channels = "RGB"`` in packager.toml to evidence rather than to memory.
    """
    expected = np.asarray([reference(crop).ravel() for crop in crops], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    rgb = np.einsum("ij,ij->i", embed(sess, crops, rgb=True), expected)
    bgr = np.einsum("ij,ij->i", embed(sess, crops, rgb=False), expected)
    return float(rgb.min()), float(bgr.min())
