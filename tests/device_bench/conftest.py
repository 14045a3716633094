"""Fixtures: a real adb server on a private port, fake devices connected to it, tiny bundles.

The adb server is started once per session on a free loopback port with its own HOME (so it makes
its own keys and never touches the user's), and killed at teardown. Each fake device is connected
with ``adb connect 127.0.0.1:PORT`` and disconnected after its test, so every test starts from an
empty device list.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bundle_factory import tiny_onnx, write_bundle
from fake_adb_device import FakeDevice

from device_bench.adb import Adb, AdbConfig, find_adb
from device_bench.errors import AdbNotFoundError


@dataclass
class AdbServer:
    executable: Path
    port: int
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 20) -> str:
        proc = subprocess.run(
            [str(self.executable), "-P", str(self.port), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return proc.stdout + proc.stderr

    def states(self) -> dict[str, str]:
        lines = self.run("devices").splitlines()[1:]
        return dict(line.split()[:2] for line in lines if len(line.split()) >= 2)

    def client(self, timeout_s: float = 20.0) -> Adb:
        return Adb(AdbConfig(self.executable, self.port, timeout_s))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def adb_executable() -> Path:
    try:
        return find_adb(None, os.environ)
    except AdbNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide adb for the device_bench tests: {exc}")
        pytest.skip(f"no adb on this machine ({exc})")


@pytest.fixture(scope="session")
def adb_server(adb_executable: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdbServer]:
    home = tmp_path_factory.mktemp("adb-home")
    env = {**os.environ, "HOME": str(home), "ADB_MDNS": "0", "ADB_MDNS_AUTO_CONNECT": "0"}
    env.pop("ANDROID_ADB_SERVER_PORT", None)
    server = AdbServer(adb_executable, _free_port(), env)
    out = server.run("start-server")
    if "daemon started successfully" not in out and "daemon not running" not in out:
        pytest.fail(f"could not start adb server: {out}")
    yield server
    server.run("kill-server")


@pytest.fixture
def connect(adb_server: AdbServer) -> Iterator[Callable[..., FakeDevice]]:
    """connect(**FakeDevice kwargs) -> a started fake device that adb lists (device or unauthorized)."""
    devices: list[FakeDevice] = []

    def _connect(device: FakeDevice | None = None, port: int = 0, **kwargs: object) -> FakeDevice:
        fake = device or FakeDevice(**kwargs)  # type: ignore[arg-type]
        fake.start(port)
        devices.append(fake)
        adb_server.run("connect", fake.serial)
        wanted = "device" if fake.authorized else "unauthorized"
        deadline = time.monotonic() + 10
        while adb_server.states().get(fake.serial) != wanted:
            if time.monotonic() > deadline:
                pytest.fail(f"adb never listed {fake.serial} as {wanted}: {adb_server.states()}")
            time.sleep(0.05)
        return fake

    yield _connect
    for fake in devices:
        fake.stop()
        adb_server.run("disconnect", fake.serial)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """Two ONNX variants and an (opaque) .tflite under android/: what the phone runner pushes."""
    return write_bundle(
        tmp_path / "dist" / "faceid-1.4.0",
        {
            "models/face_embedder/fp32.onnx": tiny_onnx(0).SerializeToString(),
            "models/face_embedder/int8-qdq.onnx": tiny_onnx(1).SerializeToString(),
            "android/face_embedder/fp32.tflite": b"TFL3" + bytes(range(256)) * 4,
        },
    )


@pytest.fixture
def binaries(tmp_path: Path) -> dict[str, Path]:
    """Stand-ins for the phone binaries: the fake device runs them by name."""
    out = {}
    for tool, name in (("tflite", "benchmark_model"), ("ort", "onnxruntime_perf_test")):
        path = tmp_path / "bin" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"\x7fELF fake " + name.encode())
        path.chmod(0o755)
        out[tool] = path
    return out
