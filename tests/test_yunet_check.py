"""The faceid example's YuNet task check (examples/faceid/yunet_check.py): OpenCV's decoding, the
box matching and the metrics, on hand-made outputs; and, on the real model and frames, the same faces
as ``cv2.FaceDetectorYN`` (marker e2e: needs ``prepare_data.py``)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from packager.tasks import TaskContext, load_check

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "faceid"
sys.path.insert(0, str(EXAMPLE))

import yunet_check as yc  # noqa: E402
from faceid_data import detector, faces  # noqa: E402

SIZE = (64, 96)
"""(height, width): grids of 8x12, 4x6 and 2x3 anchors."""


def grid(stride: int) -> tuple[int, int]:
    return SIZE[0] // stride, SIZE[1] // stride


def empty_outputs() -> dict[str, np.ndarray]:
    """YuNet-shaped outputs for one image with no face: [1, anchors, C] per name."""
    out = {}
    for s in yc.STRIDES:
        n = math.prod(grid(s))
        out |= {f"cls_{s}": np.zeros((1, n, 1), np.float32), f"obj_{s}": np.zeros((1, n, 1), np.float32)}
        out |= {f"bbox_{s}": np.zeros((1, n, 4), np.float32), f"kps_{s}": np.zeros((1, n, 10), np.float32)}
    return out


def put(
    out: dict[str, np.ndarray],
    stride: int,
    row: int,
    col: int,
    score: float,
    box: tuple[float, float, float, float] = (0.5, 0.5, 0.0, 0.0),
    kps: float = 0.25,
) -> None:
    """An anchor with cls = obj = ``score`` (so the face score is ``score``) and raw regressions."""
    a = row * grid(stride)[1] + col
    out[f"cls_{stride}"][0, a, 0] = out[f"obj_{stride}"][0, a, 0] = score
    out[f"bbox_{stride}"][0, a] = box
    out[f"kps_{stride}"][0, a] = kps


def face_row(x: float, y: float, w: float, h: float, score: float = 0.9, shift: float = 0.0) -> np.ndarray:
    row = np.zeros(15, np.float32)
    row[:4] = (x, y, w, h)
    row[4:14] = np.tile([x + w / 2, y + h / 2], 5) + shift
    row[14] = score
    return row


# --- decoding --------------------------------------------------------------------------------------


def test_an_anchor_decodes_to_opencvs_box_landmarks_and_score() -> None:
    out = empty_outputs()
    put(out, 8, row=2, col=3, score=0.95, box=(0.5, 0.25, math.log(2.0), math.log(3.0)), kps=0.5)
    found = yc.decode(out, SIZE)
    assert found.shape == (1, 15) and found.dtype == np.float32
    # cx = (3 + 0.5) * 8 = 28, cy = (2 + 0.25) * 8 = 18, w = 2 * 8, h = 3 * 8 -> top-left (20, 6).
    np.testing.assert_allclose(found[0, :4], [20.0, 6.0, 16.0, 24.0], rtol=1e-6)
    np.testing.assert_allclose(found[0, 4:14], np.tile([(3 + 0.5) * 8, (2 + 0.5) * 8], 5), rtol=1e-6)
    assert found[0, 14] == pytest.approx(0.95)


def test_scores_are_clamped_like_opencvs_min_max_macros() -> None:
    out = empty_outputs()
    put(out, 16, 1, 1, 0.5)
    a = 1 * grid(16)[1] + 1
    out["cls_16"][0, a, 0], out["obj_16"][0, a, 0] = 1.7, 0.81  # cls clamps to 1: sqrt(0.81) = 0.9
    put(out, 32, 0, 0, 0.5)
    out["cls_32"][0, 0, 0], out["obj_32"][0, 0, 0] = np.nan, 0.64  # MIN(NaN, 1) is 1 in OpenCV
    scores = sorted(yc.decode(out, SIZE, score_threshold=0.5)[:, 14].tolist())
    assert scores == pytest.approx([0.8, 0.9])
    put(out, 8, 0, 0, -0.3)  # negative clamps to 0: never a face
    assert len(yc.decode(out, SIZE, score_threshold=0.5)) == 2


def test_threshold_nms_and_top_k_follow_opencv() -> None:
    out = empty_outputs()
    put(out, 8, 4, 4, 0.95, box=(0.5, 0.5, math.log(4.0), math.log(4.0)))  # 32x32 box at (20, 20)
    put(out, 8, 4, 5, 0.90, box=(0.25, 0.5, math.log(4.0), math.log(4.0)))  # the same face, 6 px to the right
    put(out, 8, 1, 10, 0.85)  # a small separate face
    put(out, 16, 3, 0, 0.79)  # below the 0.8 threshold
    found = yc.decode(out, SIZE)
    assert found[:, 14].tolist() == pytest.approx([0.95, 0.85]), "NMS keeps the best of the overlapping pair"
    assert len(yc.decode(out, SIZE, top_k=1)) == 1
    assert len(yc.decode(out, SIZE, nms_threshold=0.95)) == 3, "a looser NMS keeps both boxes"
    assert len(yc.decode(empty_outputs(), SIZE)) == 0


def test_input_not_a_multiple_of_32_is_padded_like_opencv() -> None:
    """A 60x90 input runs on a 64x96 grid (FaceDetectorYN pads bottom/right to a multiple of 32)."""
    out = empty_outputs()
    put(out, 32, 1, 2, 0.9)
    np.testing.assert_allclose(yc.decode(out, (60, 90))[0, :2], [(2 + 0.5) * 32 - 16, (1 + 0.5) * 32 - 16])


def test_broken_regressions_do_not_crash_the_decoder() -> None:
    out = empty_outputs()
    put(out, 8, 0, 0, 0.9, box=(np.nan, 0.0, 200.0, 0.0))
    put(out, 8, 5, 5, 0.9)
    assert len(yc.decode(out, SIZE)) >= 1


# --- matching and metrics --------------------------------------------------------------------------


def test_box_iou_by_hand() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 10, 10]], np.float32)
    np.testing.assert_allclose(yc.box_iou(a, b), [[50 / 150, 0.0, 1.0]])


def test_matching_is_greedy_one_to_one_and_needs_half_overlap() -> None:
    ref = np.stack([face_row(0, 0, 10, 10), face_row(8, 0, 10, 10)])
    # cand 0 overlaps ref 0 by IoU 0.82 and ref 1 by 0.33; cand 1 is ref 1 exactly.
    cand = np.stack([face_row(1, 0, 10, 10), face_row(8, 0, 10, 10)])
    assert sorted(yc.match(ref, cand)) == [(0, 0), (1, 1)]
    # One candidate between two faces goes to the one it overlaps most, once.
    assert yc.match(ref, cand[:1]) == [(0, 0)]
    # 4 px off on a 10 px box: IoU 6/14 < 0.5, not the same face.
    assert yc.match(ref[:1], np.stack([face_row(4, 0, 10, 10)])) == []
    assert yc.match(ref, np.zeros((0, 15), np.float32)) == []


def test_metrics_count_missed_extra_and_moved_faces() -> None:
    reference = [
        np.stack([face_row(0, 0, 20, 20), face_row(100, 100, 20, 20)]),  # two faces
        np.zeros((0, 15), np.float32),  # none
    ]
    candidate = [
        np.stack([face_row(2, 0, 20, 20, shift=3.0)]),  # first found, moved; second missed
        np.stack([face_row(50, 50, 10, 10)]),  # an extra face
    ]
    got = {m.name: m for m in yc.metrics(yc.compare(reference, candidate))}
    assert got["face_recall"].value == pytest.approx(0.5) and got["face_recall"].higher_is_better
    assert got["extra_faces"].value == pytest.approx(0.5) and not got["extra_faces"].higher_is_better
    assert got["mean_iou"].value == pytest.approx(18 * 20 / (2 * 400 - 18 * 20))
    assert got["mean_iou"].higher_is_better
    # Landmarks: the box moved 2 px right (centre too) and the points 3 px more on x and y.
    assert got["landmark_error_px"].value == pytest.approx(math.hypot(2 + 3, 3))
    assert not got["landmark_error_px"].higher_is_better


def test_metrics_are_none_rather_than_invented_without_faces() -> None:
    nothing = [np.zeros((0, 15), np.float32)]
    got = {m.name: m.value for m in yc.metrics(yc.compare(nothing, nothing))}
    assert got == {"face_recall": None, "extra_faces": 0.0, "mean_iou": None, "landmark_error_px": None}


def test_check_decodes_a_batch_and_is_perfect_against_itself() -> None:
    one, two = empty_outputs(), empty_outputs()
    put(one, 8, 2, 2, 0.95)
    put(two, 16, 1, 1, 0.9)
    put(two, 32, 0, 2, 0.85)
    batch = {k: np.concatenate([one[k], two[k]]) for k in one}
    context = TaskContext(np.zeros((2, 3, *SIZE), np.float32), SIZE, "NCHW")
    got = {m.name: m.value for m in yc.check(batch, batch, context)}
    assert got == {"face_recall": 1.0, "extra_faces": 0.0, "mean_iou": 1.0, "landmark_error_px": 0.0}
    moved = {k: v.copy() for k, v in batch.items()}
    moved["kps_8"][0] += 0.125  # every landmark of image 0's face: 1 px right and 1 px down
    got = {m.name: m.value for m in yc.check(batch, moved, context)}
    assert got["landmark_error_px"] == pytest.approx((math.sqrt(2) + 0 + 0) / 3)


def test_the_config_loads_this_check_and_the_thresholds_agree() -> None:
    assert load_check("yunet_check.py:check", EXAMPLE).__name__ == "check"
    # The check judges faces at the score the example's pipeline detects them with.
    assert yc.SCORE_THRESHOLD == faces.DETECTION_SCORE == detector.CHECK_SCORE


# --- the real model: same faces as OpenCV ----------------------------------------------------------

YUNET = EXAMPLE / "models" / "face_detection_yunet_2023mar.onnx"
FRAMES = EXAMPLE / "data" / detector.EVAL_DIR


@pytest.mark.e2e
def test_decoder_gives_cv2_facedetectoryn_faces_on_the_example_frames() -> None:
    if not YUNET.is_file() or not FRAMES.is_dir():
        pytest.skip(f"run examples/faceid/prepare_data.py first ({YUNET.name} or {FRAMES} is missing)")
    import onnxruntime as ort

    session = ort.InferenceSession(str(YUNET), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    opencv = cv2.FaceDetectorYN.create(
        str(YUNET), "", (detector.SIZE, detector.SIZE), yc.SCORE_THRESHOLD, yc.NMS_THRESHOLD, yc.TOP_K
    )
    frames = sorted(FRAMES.glob("*.png"))
    assert len(frames) >= 40
    total = 0
    for frame in frames:
        image = cv2.imread(str(frame), cv2.IMREAD_COLOR)
        tensor = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)  # BGR 0..255
        outputs = dict(zip(names, session.run(names, {"input": tensor}), strict=True))
        ours = yc.decode(outputs, image.shape[:2])
        _, theirs = opencv.detect(image)
        theirs = np.zeros((0, 15), np.float32) if theirs is None else theirs
        assert ours.shape == theirs.shape, frame.name
        np.testing.assert_allclose(ours[:, :14], theirs[:, :14], atol=1e-3, rtol=0, err_msg=frame.name)
        np.testing.assert_allclose(ours[:, 14], theirs[:, 14], atol=1e-5, rtol=0, err_msg=frame.name)
        total += len(ours)
    assert total >= 100, "the frames should hold well over 100 faces at the check's threshold"
