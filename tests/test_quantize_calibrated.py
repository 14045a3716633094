"""The shared calibration step's folder: complete, and its ranges survive the cache exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from quantize_helpers import context

from packager.quantize.calibrated import Calibrated, load_ranges, save_ranges


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
