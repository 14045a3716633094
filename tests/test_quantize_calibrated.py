"""The shared calibration step's folder: complete, and its ranges survive the cache exactly."""

from __future__ import annotations

from pathlib import Path

import model_factory
import numpy as np
import onnx
import pytest
from quantize_helpers import context

from packager.quantize.calibrated import Calibrated, load_ranges, save_ranges
from packager.quantize.calibration import quantizable_nodes


def test_calibration_folder_holds_a_runnable_int8_model_and_its_choice(tmp_path: Path) -> None:
    ctx = context(tmp_path, "int8-qdq")
    assert ctx.calibrated is not None
    calibrated = Calibrated(ctx.calibrated)
    details = calibrated.details()
    assert details["calibration"] == "minmax" and details["calibration_images"] == 16
    assert calibrated.int8.stat().st_size < 0.6 * ctx.reference.stat().st_size
    assert calibrated.probe().shape == (16, 3, 32, 32) and calibrated.expected().shape == (16, 128)


def test_ranges_round_trip_bit_exactly(tmp_path: Path) -> None:
    ctx = context(tmp_path, "int8-qdq")
    assert ctx.calibrated is not None
    original = Calibrated(ctx.calibrated).ranges()
    save_ranges(original, tmp_path / "again.json")
    again = load_ranges(tmp_path / "again.json")
    assert set(again.data) == set(original.data)
    for name, td in original.data.items():
        low, high = again.data[name].range_value
        assert np.array_equal(low, td.range_value[0]) and low.dtype == np.asarray(td.range_value[0]).dtype
        assert np.array_equal(high, td.range_value[1])


def test_preprocessed_model_names_every_node(tmp_path: Path) -> None:
    # The source's pixel normalization (Mul, Sub) is unnamed, as exporters often leave it; an empty
    # name in an exclude list would keep every unnamed node in float.
    ctx = context(tmp_path, "int8-qdq")
    assert ctx.calibrated is not None
    names = [n.name for n in onnx.load(str(Calibrated(ctx.calibrated).preprocessed)).graph.node]
    assert all(names) and len(set(names)) == len(names)


@pytest.mark.parametrize(
    ("output", "head", "other"), [("embedding", "fc", "aux_fc"), ("logits", "aux_fc", "fc")]
)
def test_quantizable_nodes_of_an_output_leave_other_heads_out(
    tmp_path: Path, output: str, head: str, other: str
) -> None:
    path = model_factory.save(model_factory.resnet_like(two_heads=True), tmp_path / "two.onnx")
    nodes = quantizable_nodes(path, output=output)
    assert head in nodes and other not in nodes and "conv_6" in nodes
    assert set(quantizable_nodes(path)) == set(nodes) | {other}


def test_candidate_ranges_are_scored_on_the_configured_output_not_the_first(tmp_path: Path) -> None:
    from packager.validate.metrics import cosine_stats
    from packager.validate.runners import OrtRunner

    ctx = context(
        tmp_path,
        "int8-qdq",
        build=lambda: model_factory.resnet_like(two_heads=True),  # outputs: logits, embedding
        output={"name": "embedding"},
    )
    assert ctx.calibrated is not None
    calibrated = Calibrated(ctx.calibrated)
    assert calibrated.scored_output() == "embedding"
    probe = calibrated.probe()
    expected = OrtRunner(ctx.reference, "reference", output="embedding").run(probe)
    assert np.array_equal(calibrated.expected(), expected)
    measured = OrtRunner(calibrated.int8, "reference", output="embedding").run(probe)
    score = calibrated.details()["calibration_candidates"]["minmax"]
    assert score == round(cosine_stats(expected, measured).mean, 6)
