"""Per-node sensitivity on nets whose Relu/Clip the QDQ quantizer folds away (and renames around)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import model_factory
import onnx
import pytest
from quantize_helpers import CONV_RELU_NETS, context, op_counts

from packager.quantize.calibrated import Calibrated
from packager.quantize.calibration import quantizable_nodes
from packager.quantize.sensitivity import NodeSensitivity, node_sensitivity

PROBES = 4


def _scores(tmp_path: Path, build: Callable[[], onnx.ModelProto]) -> tuple[list[str], list[NodeSensitivity]]:
    calibrated = Calibrated(context(tmp_path, "int8-qdq", build=build).calibrated)
    candidates = quantizable_nodes(calibrated.preprocessed)
    scores = node_sensitivity(
        calibrated.preprocessed, calibrated.int8, calibrated.probe()[:PROBES], candidates
    )
    return candidates, scores


@pytest.mark.parametrize("build", CONV_RELU_NETS.values(), ids=list(CONV_RELU_NETS))
def test_every_candidate_gets_one_finite_score(tmp_path: Path, build: Callable[[], onnx.ModelProto]) -> None:
    candidates, scores = _scores(tmp_path, build)
    assert sorted(s.node for s in scores) == sorted(candidates)
    assert all(math.isfinite(v) for s in scores for v in (s.input_sqnr_db, s.output_sqnr_db, s.loss_db))
    assert [s.loss_db for s in scores] == sorted((s.loss_db for s in scores), reverse=True)


def test_folded_activation_is_scored_with_the_node_it_was_folded_into(tmp_path: Path) -> None:
    _, scores = _scores(tmp_path, model_factory.mobilenet_like)
    by_name = {s.node: s for s in scores}
    calibrated = Calibrated(tmp_path / "calibrated")
    assert "Relu" not in op_counts(calibrated.int8) and "Clip" not in op_counts(calibrated.int8)
    # The fixture's first nodes: Conv "conv_6" -> Relu "relu_7" -> depthwise Conv "conv_10" -> Clip "clip_13".
    assert by_name["relu_7"].scored_with == "conv_6" and by_name["clip_13"].scored_with == "conv_10"
    assert by_name["relu_7"].loss_db == 0.0
    assert by_name["conv_6"].scored_with is None


def test_a_node_with_a_folded_activation_is_compared_after_the_activation(tmp_path: Path) -> None:
    # The QDQ graph gives the Conv's output the Relu's name but holds pre-Relu values there; compared
    # by that name, the negatives would read as noise and the SQNR would collapse to a few dB.
    _, scores = _scores(tmp_path, model_factory.resnet_like)
    for node in ("conv_6", "conv_15", "conv_34"):  # each Conv→BatchNorm→Relu, BN folded by the pre-pass
        score = next(s for s in scores if s.node == node)
        assert score.output_sqnr_db > 25.0 and abs(score.loss_db) < 6.0


def test_unknown_candidate_is_refused(tmp_path: Path) -> None:
    calibrated = Calibrated(context(tmp_path, "int8-qdq", build=model_factory.resnet_like).calibrated)
    with pytest.raises(ValueError, match="no_such_node"):
        node_sensitivity(calibrated.preprocessed, calibrated.int8, calibrated.probe()[:1], ["no_such_node"])
