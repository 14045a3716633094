"""What phone ran a benchmark, and how hot it was: recorded with every result.

Latency on phones depends on SoC, Android version and temperature (thermal throttling can double a
number), so a result without these facts cannot be compared with another one.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from device_bench.adb import AdbDevice
from device_bench.errors import DeviceBenchError
from device_bench.results import DeviceInfo

log = logging.getLogger(__name__)

_PROP = re.compile(r"^\[(?P<key>[^\]]+)\]: \[(?P<value>.*)\]\s*$")
THERMAL_COMMAND = (
    'for z in /sys/class/thermal/thermal_zone*; do echo "$(cat $z/type 2>/dev/null) '
    '$(cat $z/temp 2>/dev/null)"; done'
)


class DeviceTooHotError(DeviceBenchError):
    def __init__(self, serial: str, temp_c: float, limit_c: float, waited_s: float) -> None:
        super().__init__(
            f"{serial}: battery still at {temp_c:.1f} °C after waiting {waited_s:.0f} s for "
            f"{limit_c:.1f} °C. Fix: let the phone cool (unplug chargers, screen off) or raise "
            "--max-temp / --cool-timeout"
        )


def parse_getprop(text: str) -> dict[str, str]:
    props = {}
    for line in text.splitlines():
        if m := _PROP.match(line.strip()):
            props[m.group("key")] = m.group("value")
    return props


def parse_battery(text: str) -> tuple[int | None, float | None]:
    """(level %, temperature °C) from ``dumpsys battery``; it prints tenths of a degree."""
    level = re.search(r"^\s*level: (\d+)", text, re.M)
    temp = re.search(r"^\s*temperature: (-?\d+)", text, re.M)
    return (
        int(level.group(1)) if level else None,
        int(temp.group(1)) / 10.0 if temp else None,
    )


def parse_thermal(text: str) -> dict[str, float]:
    """Zone type -> °C. Kernels report millidegrees (most) or degrees; unreadable zones are dropped."""
    zones: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
            continue
        value = int(parts[1])
        celsius = value / 1000.0 if abs(value) >= 1000 else float(value)
        name, n = parts[0], 2
        while name in zones:
            name, n = f"{parts[0]}#{n}", n + 1
        zones[name] = celsius
    return zones


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def collect(device: AdbDevice) -> DeviceInfo:
    props = parse_getprop(device.shell("getprop").output)
    level, temp = parse_battery(device.shell("dumpsys battery").output)
    thermal = parse_thermal(device.shell(THERMAL_COMMAND).output)
    return DeviceInfo(
        serial=device.serial,
        model=props.get("ro.product.model"),
        manufacturer=props.get("ro.product.manufacturer"),
        soc=props.get("ro.soc.model") or props.get("ro.hardware.chipname") or props.get("ro.board.platform"),
        board=props.get("ro.product.board") or props.get("ro.hardware"),
        abi=props.get("ro.product.cpu.abi"),
        sdk=_int_or_none(props.get("ro.build.version.sdk")),
        android=props.get("ro.build.version.release"),
        fingerprint=props.get("ro.build.fingerprint"),
        battery_level=level,
        battery_temp_c=temp,
        thermal_c=thermal,
    )


def battery_temp(device: AdbDevice) -> float | None:
    return parse_battery(device.shell("dumpsys battery").output)[1]


def wait_until_cool(
    device: AdbDevice,
    max_temp_c: float,
    timeout_s: float,
    poll_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> float | None:
    """Block until the battery is at or below ``max_temp_c``; return the temperature seen.

    The battery sensor is used because it is readable on every phone without root, unlike most
    thermal zones, and it tracks the heat a previous benchmark left behind.
    """
    start = clock()
    while True:
        temp = battery_temp(device)
        if temp is None or temp <= max_temp_c:
            return temp
        waited = clock() - start
        if waited >= timeout_s:
            raise DeviceTooHotError(device.serial, temp, max_temp_c, waited)
        log.info("%s: %.1f °C > %.1f °C, waiting %.0f s", device.serial, temp, max_temp_c, poll_s)
        sleep(poll_s)
