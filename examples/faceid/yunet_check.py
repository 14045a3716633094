"""Task check for the YuNet face detector: the faces the app gets, FP32 against a variant.

packager.toml names it as ``task = { check = "yunet_check.py:check", ... }``. Per-tensor metrics
(SQNR of each head) say how far a variant's raw outputs moved; this says whether the *faces* moved:
both outputs are decoded into faces the way the app does it, then matched box by box.

:func:`decode` is OpenCV's ``cv2.FaceDetectorYN`` post-processing, step for step
(``modules/objdetect/src/face_detect.cpp``, ``FaceDetectorYNImpl::postProcess``):

1. the input is padded (bottom/right) to a multiple of 32; stride ``s`` in (8, 16, 32) has a grid of
   ``pad_w / s`` x ``pad_h / s`` anchors, row-major, one per output row of ``cls_s``, ``obj_s``,
   ``bbox_s`` and ``kps_s``;
2. ``score = sqrt(clamp(cls, 0, 1) * clamp(obj, 0, 1))``, with OpenCV's ``MIN``/``MAX`` macros (a NaN
   clamps to 1); anchors with ``score < score_threshold`` are dropped;
3. box: ``cx = (col + dx) * s``, ``cy = (row + dy) * s``, ``w = exp(dw) * s``, ``h = exp(dh) * s``,
   top-left ``(cx - w / 2, cy - h / 2)``; landmark ``n``: ``((kx_n + col) * s, (ky_n + row) * s)``,
   in the order right eye, left eye, nose tip, right and left mouth corner; all in float32;
4. with more than one candidate, ``cv2.dnn.NMSBoxes`` on the boxes truncated to integers (OpenCV
   builds ``Rect2i(int(x), int(y), int(w), int(h))``), eta 1 and ``top_k``; one candidate is kept as is.

Rows are ``x, y, w, h, 5 x (x, y), score``, like ``FaceDetectorYN.detect``; coordinates are pixels
of the model input (the 640x640 letterboxed frame).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from packager.tasks import TaskContext, TaskMetric

STRIDES = (8, 16, 32)
DIVISOR = 32
"""FaceDetectorYN pads its input to a multiple of this (the coarsest stride)."""
SCORE_THRESHOLD = 0.8
"""The faceid pipeline's own threshold (``faceid_data.faces.DETECTION_SCORE``, the detector that finds
the faces SFace is validated on). OpenCV's default, 0.9, would drop 59 of the 137 faces FP32 finds
in the example's frames (most of them small): real faces, which the comparison should keep."""
NMS_THRESHOLD = 0.3
TOP_K = 5000
"""``cv2.FaceDetectorYN.create``'s defaults, as in OpenCV's YuNet demo."""
MATCH_IOU = 0.5
"""A variant's face is FP32's face when their boxes overlap at least this much (the PASCAL VOC bar)."""
INT_LIMIT = 2**31 - 1
"""Box values are clamped to int32 before truncation (out of range, OpenCV's cast is undefined)."""
ROW = 15
LANDMARKS = slice(4, 14)


def _min_max_clamp(values: np.ndarray) -> np.ndarray:
    """``MAX(MIN(v, 1.f), 0.f)`` with OpenCV's macros: ``a < b ? a : b``, so NaN becomes 1."""
    upper = np.where(values < 1.0, values, np.float32(1.0))
    return np.where(upper > 0.0, upper, np.float32(0.0)).astype(np.float32)


def _candidates(outputs: Mapping[str, np.ndarray], size: tuple[int, int], threshold: float) -> np.ndarray:
    """Every anchor over ``threshold``, decoded: [K, 15] float32, strides in order, anchors row-major."""
    pad_h = ((size[0] - 1) // DIVISOR + 1) * DIVISOR
    pad_w = ((size[1] - 1) // DIVISOR + 1) * DIVISOR
    found = []
    for stride in STRIDES:
        rows, cols = pad_h // stride, pad_w // stride
        cls = np.asarray(outputs[f"cls_{stride}"], np.float32).reshape(rows * cols)
        obj = np.asarray(outputs[f"obj_{stride}"], np.float32).reshape(rows * cols)
        bbox = np.asarray(outputs[f"bbox_{stride}"], np.float32).reshape(rows * cols, 4)
        kps = np.asarray(outputs[f"kps_{stride}"], np.float32).reshape(rows * cols, 10)
        score = np.sqrt(_min_max_clamp(cls) * _min_max_clamp(obj))
        keep = np.flatnonzero(~(score < np.float32(threshold)))
        row, col = (v.astype(np.float32) for v in np.divmod(keep, cols))
        s = np.float32(stride)
        box = bbox[keep]
        with np.errstate(over="ignore", invalid="ignore"):
            w, h = np.exp(box[:, 2]) * s, np.exp(box[:, 3]) * s
            cx, cy = (col + box[:, 0]) * s, (row + box[:, 1]) * s
        faces = np.empty((len(keep), ROW), np.float32)
        faces[:, 0], faces[:, 1] = cx - w / np.float32(2), cy - h / np.float32(2)
        faces[:, 2], faces[:, 3] = w, h
        points = kps[keep].reshape(-1, 5, 2)
        faces[:, 4:14:2] = (points[:, :, 0] + col[:, None]) * s
        faces[:, 5:14:2] = (points[:, :, 1] + row[:, None]) * s
        faces[:, 14] = score[keep]
        found.append(faces)
    return np.concatenate(found)


def decode(
    outputs: Mapping[str, np.ndarray],
    size: tuple[int, int],
    score_threshold: float = SCORE_THRESHOLD,
    nms_threshold: float = NMS_THRESHOLD,
    top_k: int = TOP_K,
) -> np.ndarray:
    """One image's faces as ``cv2.FaceDetectorYN.detect`` returns them: [K, 15] float32, NMS order.

    ``outputs`` holds the 12 outputs of one image by name (any leading batch dim of 1 is ignored);
    ``size`` is the input's (height, width).
    """
    faces = _candidates(outputs, size, score_threshold)
    if len(faces) <= 1:
        return faces
    with np.errstate(invalid="ignore"):
        boxes = np.trunc(np.nan_to_num(faces[:, :4].astype(np.float64), nan=0.0))
    boxes = np.clip(boxes, -INT_LIMIT - 1, INT_LIMIT).astype(np.int64)
    keep = cv2.dnn.NMSBoxes(
        [tuple(int(v) for v in b) for b in boxes],
        faces[:, 14].tolist(),
        score_threshold,
        nms_threshold,
        eta=1.0,
        top_k=top_k,
    )
    return faces[np.asarray(keep, dtype=np.int64).reshape(-1)]


def decode_batch(outputs: Mapping[str, np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    """:func:`decode` of each image of a batch (every output [N, ...])."""
    count = len(next(iter(outputs.values())))
    return [decode({k: v[i] for k, v in outputs.items()}, size) for i in range(count)]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every ``x, y, w, h`` box of ``a`` [n, 4] with every one of ``b`` [m, 4]: [n, m]."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y1 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(iou, nan=0.0)


def match(reference: np.ndarray, candidate: np.ndarray, min_iou: float = MATCH_IOU) -> list[tuple[int, int]]:
    """Greedy one-to-one matching: the most-overlapping (FP32 face, variant face) pair first, then
    the next among the unmatched, down to ``min_iou``. Ties go to the lower indices (best scores)."""
    if not len(reference) or not len(candidate):
        return []
    iou = box_iou(reference[:, :4], candidate[:, :4])
    order = np.argsort(-iou, axis=None, kind="stable")
    used_ref, used_cand, pairs = set(), set(), []
    for flat in order:
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < min_iou:
            break
        if i not in used_ref and j not in used_cand:
            used_ref.add(i)
            used_cand.add(j)
            pairs.append((i, j))
    return pairs


@dataclass(frozen=True)
class Comparison:
    """FP32 against a variant over a set of images."""

    reference_faces: int
    candidate_faces: int
    images: int
    ious: np.ndarray
    """IoU of each matched pair."""
    landmark_errors: np.ndarray
    """Per matched pair: mean distance of its 5 landmarks, input pixels."""

    @property
    def matched(self) -> int:
        return len(self.ious)


def compare(reference: list[np.ndarray], candidate: list[np.ndarray]) -> Comparison:
    """Match each image's faces (:func:`match`) and collect what the metrics need."""
    ious, errors = [], []
    for ref, cand in zip(reference, candidate, strict=True):
        pairs = match(ref, cand)
        if not pairs:
            continue
        i, j = (np.asarray(v) for v in zip(*pairs, strict=True))
        ious.append(box_iou(ref[i, :4], cand[j, :4]).diagonal())
        delta = ref[i, LANDMARKS].reshape(-1, 5, 2) - cand[j, LANDMARKS].reshape(-1, 5, 2)
        errors.append(np.linalg.norm(delta.astype(np.float64), axis=2).mean(axis=1))
    return Comparison(
        reference_faces=sum(len(r) for r in reference),
        candidate_faces=sum(len(c) for c in candidate),
        images=len(reference),
        ious=np.concatenate(ious) if ious else np.zeros(0),
        landmark_errors=np.concatenate(errors) if errors else np.zeros(0),
    )


def metrics(found: Comparison) -> list[TaskMetric]:
    """The four figures an app feels; None where the data cannot give one (no FP32 faces, no match)."""
    n_ref = found.reference_faces
    where = f"score >= {SCORE_THRESHOLD:g}, NMS {NMS_THRESHOLD:g}, matched at IoU >= {MATCH_IOU:g}"
    return [
        TaskMetric("face_recall", found.matched / n_ref if n_ref else None, True,
                   f"share of the {n_ref} faces FP32 finds that the variant finds too ({where})"),
        TaskMetric("extra_faces", (found.candidate_faces - found.matched) / max(found.images, 1), False,
                   f"variant faces with no FP32 face, per image ({found.images} images)"),
        TaskMetric("mean_iou", float(found.ious.mean()) if found.matched else None, True,
                   "mean IoU of matched boxes, FP32 vs variant"),
        TaskMetric("landmark_error_px", float(found.landmark_errors.mean()) if found.matched else None,
                   False, "mean distance of the 5 landmarks of matched faces, FP32 vs variant "
                   "(pixels of the 640x640 input)"),
    ]  # fmt: skip


def check(
    reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], context: TaskContext
) -> list[TaskMetric]:
    """Decode FP32's and the variant's outputs into faces as the app does, and compare them."""
    ref = decode_batch(reference, context.size)
    cand = decode_batch(candidate, context.size)
    return metrics(compare(ref, cand))
