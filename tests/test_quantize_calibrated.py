"""The shared calibration step's folder: complete, and its ranges survive the cache exactly."""

from __future__ import annotations

from pathlib import Path

import model_factory
import numpy as np
import onnx
import pytest
from quantize_helpers import context

from packager.config import parse_config
from packager.prepare import prepare_reference
from packager.quantize.calibrated import (
    CHECK_EVERY,
    Calibrated,
    load_ranges,
    run_calibration,
    save_ranges,
    split_calibration,
)
from packager.quantize.calibration import quantizable_nodes


def test_calibration_folder_holds_a_runnable_int8_model_and_its_choice(tmp_path: Path) -> None:
    ctx = context(tmp_path, "int8-qdq")
    assert ctx.calibrated is not None
    calibrated = Calibrated(ctx.calibrated)
    details = calibrated.details()
    assert details["calibration"] == "minmax" and details["calibration_images"] == 16
    assert calibrated.int8.stat().st_size < 0.6 * ctx.reference.stat().st_size
    # 16 images, every 4th held out: 12 tune (all of them the probe, asked for 16), 4 check.
    assert (details["tuning_images"], details["check_images"], details["probe_images"]) == (12, 4, 12)
    assert calibrated.probe().shape == (12, 3, 32, 32) and calibrated.expected().shape == (12, 128)
    assert calibrated.check().shape == (4, 3, 32, 32) and calibrated.check_expected().shape == (4, 128)
    assert 0.9 < details["calibration_check_mean_cosine"] <= 1.0


def test_split_holds_out_every_kth_image_deterministically_and_disjointly() -> None:
    tuning, check = split_calibration(10, 4)
    assert check.tolist() == [3, 7] and tuning.tolist() == [0, 1, 2, 4, 5, 6, 8, 9]
    for count in (1, 3, 4, 16, 64, 65):
        tuning, check = split_calibration(count)
        again = split_calibration(count)
        assert tuning.tolist() == again[0].tolist() and check.tolist() == again[1].tolist()
        assert not set(tuning.tolist()) & set(check.tolist())
        assert sorted([*tuning.tolist(), *check.tolist()]) == list(range(count))
        assert len(check) == count // CHECK_EVERY and 0 in tuning
    assert split_calibration(64)[1].size == 16  # the example's 64 calibration faces
    with pytest.raises(ValueError, match="at least 2"):
        split_calibration(8, 1)


def _calibrate(tmp_path: Path, data: np.ndarray, name: str, method: str = "minmax", **options) -> Calibrated:
    source = model_factory.save(
        model_factory.mobilefacenet_like(size=32, seed=4, opset=11), tmp_path / "s.onnx"
    )
    calibration = {"images": str(tmp_path), "count": 16, "min_count": 1, "method": method, **options}
    model = {"name": "m", "source": str(source), "input": {"size": [32, 32]}, "calibration": calibration}
    spec = parse_config(
        {"project": {"name": "a", "version": "1"}, "models": [{**model, "evaluation": {"images": "e"}}]},
        tmp_path / "p.toml",
    ).models[0]
    reference = tmp_path / "ref" / "fp32.onnx"
    if not reference.exists():
        prepare_reference(spec, reference)
    out = tmp_path / name
    out.mkdir()
    assert spec.calibration is not None
    run_calibration(reference, data, spec.calibration, 16, out)
    return Calibrated(out)


@pytest.mark.parametrize(
    ("method", "options"), [("minmax", {}), ("percentile", {"percentile": [99.0, 99.9, 100.0]})]
)
def test_check_images_drive_no_choice(tmp_path: Path, method: str, options: dict[str, object]) -> None:
    # Replace the check images with wild ones (8x the pixel range): ranges, the chosen setting, the
    # INT8 model and the probe stay byte for byte; only the measured check figure moves.
    data = np.random.default_rng(7).uniform(0, 255, (16, 3, 32, 32)).astype(np.float32)
    wild = data.copy()
    wild[split_calibration(16)[1]] *= 8.0
    first = _calibrate(tmp_path, data, "first", method, **options)
    second = _calibrate(tmp_path, wild, "second", method, **options)
    for name in ("ranges.json", "int8.onnx", "probe.npy", "expected.npy"):
        assert (first.folder / name).read_bytes() == (second.folder / name).read_bytes(), name
    a, b = first.details(), second.details()
    assert a["calibration"] == b["calibration"] and a["calibration_candidates"] == b["calibration_candidates"]
    assert a["calibration_check_mean_cosine"] != b["calibration_check_mean_cosine"]
    assert not np.array_equal(first.check(), second.check())


def test_fewer_images_than_the_split_leave_an_empty_check_part(tmp_path: Path) -> None:
    data = np.random.default_rng(7).uniform(0, 255, (CHECK_EVERY - 1, 3, 32, 32)).astype(np.float32)
    calibrated = _calibrate(tmp_path, data, "few")
    details = calibrated.details()
    assert details["check_images"] == 0 and details["calibration_check_mean_cosine"] is None
    assert calibrated.check().shape[0] == 0 and calibrated.check_expected().shape == (0, 128)
    assert calibrated.probe().shape[0] == CHECK_EVERY - 1


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
