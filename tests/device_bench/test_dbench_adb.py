"""The adb transport against a real adb server and fake devices: errors name the fix."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fake_adb_device import ShellReply

from device_bench.adb import find_adb
from device_bench.errors import (
    AdbNotFoundError,
    AdbTimeoutError,
    DeviceGoneError,
    NoDeviceError,
    SeveralDevicesError,
    UnauthorizedDeviceError,
)


def test_adb_missing_names_the_ways_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(AdbNotFoundError) as info:
        find_adb(str(tmp_path / "nope" / "adb"), {})
    assert "apt-get install adb" in str(info.value)
    assert "pip install adbutils" in str(info.value)
    with pytest.raises(AdbNotFoundError, match="--adb PATH"):
        find_adb(None, {"ADB": str(tmp_path / "missing-adb")})


def test_adb_from_environment_variable(adb_executable: Path) -> None:
    assert find_adb(None, {"ADB": str(adb_executable)}) == adb_executable


def test_no_device(adb_server) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NoDeviceError, match="no Android device connected"):
        adb_server.client().select([], all_devices=False)


def test_several_devices_without_serial(adb_server, connect) -> None:  # type: ignore[no-untyped-def]
    a, b = connect(), connect()
    adb = adb_server.client()
    with pytest.raises(SeveralDevicesError) as info:
        adb.select([], all_devices=False)
    assert a.serial in str(info.value) and b.serial in str(info.value)
    assert "--serial" in str(info.value)
    assert sorted(adb.select([], all_devices=True)) == sorted([a.serial, b.serial])
    assert adb.select([b.serial], all_devices=False) == [b.serial]


def test_unknown_serial_lists_the_connected_ones(adb_server, connect) -> None:  # type: ignore[no-untyped-def]
    fake = connect()
    with pytest.raises(NoDeviceError) as info:
        adb_server.client().select(["R58M000"], all_devices=False)
    assert "'R58M000' is not connected" in str(info.value) and fake.serial in str(info.value)


def test_unauthorized_device(adb_server, connect) -> None:  # type: ignore[no-untyped-def]
    fake = connect(authorized=False)
    adb = adb_server.client()
    with pytest.raises(UnauthorizedDeviceError, match="Allow USB debugging"):
        adb.select([], all_devices=False)
    with pytest.raises(UnauthorizedDeviceError):
        adb.device(fake.serial).shell("getprop")


def test_shell_reports_exit_status_over_legacy_shell(adb_server, connect) -> None:  # type: ignore[no-untyped-def]
    fake = connect()
    dev = adb_server.client().device(fake.serial)
    ok = dev.shell("getprop")
    assert ok.status == 0 and "[ro.product.model]: [Pixel 7]" in ok.output
    assert "__DEVICE_BENCH_RC" not in ok.output
    missing = dev.shell("frobnicate --now")
    assert missing.status == 127 and "frobnicate: not found" in missing.output
    assert fake.commands[-1] == "(frobnicate --now) 2>&1; echo __DEVICE_BENCH_RC=$?"


def test_push_transfers_bytes_and_mode(adb_server, connect, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake = connect()
    local = tmp_path / "blob.bin"
    data = bytes(range(256)) * 2000  # 512 KB: several sync DATA chunks
    local.write_bytes(data)
    local.chmod(0o640)
    adb_server.client().device(fake.serial).push(local, "/data/local/tmp/blob.bin")
    assert fake.files["/data/local/tmp/blob.bin"].data == data
    assert fake.files["/data/local/tmp/blob.bin"].mode == 0o640


def test_device_gone_is_reported_as_such(adb_server, connect) -> None:  # type: ignore[no-untyped-def]
    fake = connect()
    dev = adb_server.client().device(fake.serial)
    fake.stop()
    time.sleep(0.2)
    with pytest.raises(DeviceGoneError, match="--resume"):
        dev.shell("getprop")


def test_every_adb_call_has_a_timeout(adb_server, connect) -> None:  # type: ignore[no-untyped-def]
    fake = connect()

    def slow(_: str) -> ShellReply:
        time.sleep(1.5)
        return ShellReply("late\n")

    fake.extra_commands["sleepy"] = slow
    dev = adb_server.client(timeout_s=0.4).device(fake.serial)
    with pytest.raises(AdbTimeoutError, match="raise --timeout"):
        dev.shell("sleepy")
