"""Device facts from getprop, dumpsys battery and thermal zones."""

from __future__ import annotations

import pytest
from fake_adb_device import DUMPSYS_BATTERY

from device_bench.device_info import parse_battery, parse_getprop, parse_thermal


def test_getprop_lines() -> None:
    props = parse_getprop(
        "[ro.product.model]: [SM-G991B]\n[ro.build.version.sdk]: [33]\n[empty]: []\nnoise\n"
    )
    assert props == {"ro.product.model": "SM-G991B", "ro.build.version.sdk": "33", "empty": ""}


def test_battery_level_and_tenths_of_a_degree() -> None:
    assert parse_battery(DUMPSYS_BATTERY) == (85, pytest.approx(28.5))
    assert parse_battery("Can't find service: battery\n") == (None, None)


def test_thermal_millidegrees_degrees_and_unreadable_zones() -> None:
    text = "cpu-0-0-usr 41200\ngpu 38\nbattery \nskin 33100\nskin 34000\n"
    assert parse_thermal(text) == {"cpu-0-0-usr": 41.2, "gpu": 38.0, "skin": 33.1, "skin#2": 34.0}
