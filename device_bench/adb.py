"""adb transport: drives the real ``adb`` client with a timeout on every call.

Why the real client rather than a Python adb library: release engineers already have adb and its
server set up (keys, USB rules, wireless pairing); talking to that server means "works in
`adb devices`" implies "works here". Every failure adb can report is turned into one of the
``DeviceBenchError`` subclasses whose message names the fix.

Shell exit status: the legacy ``shell:`` service (old phones, and any device without ``shell_v2``)
does not report the command's status, so every command is wrapped as ``(CMD) 2>&1; echo
__DEVICE_BENCH_RC=$?`` and the status is read back from that marker. A missing marker means the
connection dropped mid-command.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from device_bench.errors import (
    AdbCommandError,
    AdbNotFoundError,
    AdbTimeoutError,
    DeviceGoneError,
    NoDeviceError,
    NoSpaceError,
    SeveralDevicesError,
    UnauthorizedDeviceError,
)

log = logging.getLogger(__name__)

RC_MARKER = "__DEVICE_BENCH_RC="
_RC_LINE = re.compile(rf"^{RC_MARKER}(\d+)\s*$", re.M)
# What adb prints when the device vanished or never was there, across adb 29..36.
_GONE = re.compile(r"device offline|error: closed|protocol fault|connection reset|no devices/emulators found")
_NOT_FOUND = re.compile(r"device '[^']*' not found|device not found")
_UNAUTHORIZED = re.compile(r"unauthorized")
_NO_SPACE = re.compile(r"No space left on device|ENOSPC")


@dataclass(frozen=True)
class AdbConfig:
    """How to reach the adb server.

    ``server_port`` None means adb's own default (5037, or $ANDROID_ADB_SERVER_PORT).
    """

    executable: Path
    server_port: int | None = None
    timeout_s: float = 60.0


@dataclass(frozen=True)
class DeviceEntry:
    """One line of ``adb devices``: state is device, offline, unauthorized, recovery, ..."""

    serial: str
    state: str


@dataclass(frozen=True)
class ShellResult:
    status: int
    output: str


def find_adb(explicit: str | None, environ: Mapping[str, str]) -> Path:
    """Locate adb: --adb, then $ADB, then PATH, then the binary shipped inside the adbutils wheel."""
    tried: list[str] = []
    candidates: list[str] = []
    if explicit:
        candidates.append(explicit)
    if environ.get("ADB"):
        candidates.append(environ["ADB"])
    for candidate in candidates:
        tried.append(candidate)
        resolved = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if resolved and os.access(resolved, os.X_OK):
            return Path(resolved)
    if explicit or environ.get("ADB"):
        raise AdbNotFoundError(tried)
    on_path = shutil.which("adb", path=environ.get("PATH"))
    tried.append("PATH")
    if on_path:
        return Path(on_path)
    bundled = _adbutils_binary()
    tried.append("adbutils wheel")
    if bundled is not None:
        return bundled
    raise AdbNotFoundError(tried)


def _adbutils_binary() -> Path | None:
    """The adb inside the adbutils wheel, found without importing adbutils (its import is slow)."""
    spec = importlib.util.find_spec("adbutils")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "binaries" / "adb"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


class Adb:
    """The adb client bound to one server; hands out ``AdbDevice`` objects per serial."""

    def __init__(self, config: AdbConfig) -> None:
        self.config = config

    def base_command(self) -> list[str]:
        cmd = [str(self.config.executable)]
        if self.config.server_port is not None:
            cmd += ["-P", str(self.config.server_port)]
        return cmd

    def run(self, args: Sequence[str], timeout_s: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run one adb command; stdout and stderr are merged (adb splits messages between them at will)."""
        cmd = self.base_command() + list(args)
        timeout = timeout_s if timeout_s is not None else self.config.timeout_s
        log.debug("adb: %s", " ".join(cmd))
        try:
            return subprocess.run(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AdbTimeoutError(" ".join(cmd), timeout) from exc
        except FileNotFoundError as exc:
            raise AdbNotFoundError([str(self.config.executable)]) from exc

    def devices(self) -> list[DeviceEntry]:
        proc = self.run(["devices"])
        if proc.returncode != 0:
            raise AdbCommandError("adb devices", proc.stdout)
        entries = []
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
                entries.append(DeviceEntry(parts[0], parts[1]))
        return entries

    def select(self, serials: Sequence[str], all_devices: bool) -> list[str]:
        """Resolve --serial/--all to usable serials, failing with the reason adb would give."""
        entries = self.devices()
        states = {e.serial: e.state for e in entries}
        if all_devices:
            chosen = list(states)
        elif serials:
            chosen = list(dict.fromkeys(serials))
        else:
            if len(entries) > 1:
                raise SeveralDevicesError([e.serial for e in entries])
            chosen = [e.serial for e in entries]
        if not chosen:
            raise NoDeviceError()
        for serial in chosen:
            state = states.get(serial)
            if state is None:
                raise NoDeviceError(serial, list(states))
            if state == "unauthorized":
                raise UnauthorizedDeviceError(serial)
            if state != "device":
                raise DeviceGoneError(serial, f"adb reports it as {state!r}")
        return chosen

    def device(self, serial: str) -> AdbDevice:
        return AdbDevice(self, serial)


class AdbDevice:
    """One phone: shell commands with exit status, and file pushes."""

    def __init__(self, adb: Adb, serial: str) -> None:
        self.adb = adb
        self.serial = serial

    def _check(self, output: str) -> None:
        """Raise the specific error for adb's own failure messages about this device."""
        if _UNAUTHORIZED.search(output):
            raise UnauthorizedDeviceError(self.serial)
        if _GONE.search(output) or _NOT_FOUND.search(output):
            raise DeviceGoneError(self.serial, output.strip().splitlines()[-1] if output.strip() else "")

    def shell(self, command: str, timeout_s: float | None = None) -> ShellResult:
        wrapped = f"({command}) 2>&1; echo {RC_MARKER}$?"
        proc = self.adb.run(["-s", self.serial, "shell", wrapped], timeout_s)
        output = proc.stdout.replace("\r\n", "\n")
        matches = list(_RC_LINE.finditer(output))
        if not matches:
            self._check(output)
            raise DeviceGoneError(self.serial, f"output of `{command}` ended without its exit status")
        last = matches[-1]
        return ShellResult(int(last.group(1)), output[: last.start()])

    def push(self, local: Path, remote: str, timeout_s: float | None = None) -> None:
        proc = self.adb.run(["-s", self.serial, "push", str(local), remote], timeout_s)
        if proc.returncode == 0:
            return
        if _NO_SPACE.search(proc.stdout):
            raise NoSpaceError(self.serial, remote)
        self._check(proc.stdout)
        raise AdbCommandError(f"adb -s {self.serial} push {local} {remote}", proc.stdout)
