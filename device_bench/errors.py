"""One error hierarchy for device_bench.

The library raises; only ``cli.py`` maps an error to an exit code and prints it. Every subclass builds
its message in ``__init__`` so that each raise site says what went wrong *and* how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence


class DeviceBenchError(Exception):
    """Root of every error device_bench raises on purpose."""

    exit_code = 1


class UsageError(DeviceBenchError):
    """A command-line option is wrong or missing; the user must change the command."""

    exit_code = 2


class AdbNotFoundError(DeviceBenchError):
    def __init__(self, tried: Sequence[str]) -> None:
        super().__init__(
            f"adb not found (looked at: {', '.join(tried)}). Fix: install Android platform-tools "
            "(`apt-get install adb` or `pip install adbutils`, which ships one), put it on PATH, "
            "or pass --adb PATH / set $ADB"
        )


class AdbTimeoutError(DeviceBenchError):
    def __init__(self, command: str, timeout_s: float) -> None:
        self.command = command
        super().__init__(
            f"adb did not answer within {timeout_s:g} s: {command}. Fix: check the cable/connection "
            "(`adb devices`), or raise --timeout for slow models"
        )


class AdbCommandError(DeviceBenchError):
    def __init__(self, command: str, output: str) -> None:
        self.command = command
        self.output = output
        super().__init__(f"adb failed: {command}: {_first_lines(output)}")


class NoDeviceError(DeviceBenchError):
    def __init__(self, serial: str | None = None, present: Sequence[str] = ()) -> None:
        if serial is None:
            msg = (
                "no Android device connected. Fix: plug the phone in with USB debugging enabled "
                "(or `adb connect HOST:PORT`) and check `adb devices`"
            )
        else:
            listed = ", ".join(present) or "none"
            msg = f"device {serial!r} is not connected (connected: {listed}). Fix: check --serial"
        super().__init__(msg)


class SeveralDevicesError(DeviceBenchError):
    exit_code = 2

    def __init__(self, serials: Sequence[str]) -> None:
        super().__init__(
            f"{len(serials)} devices connected ({', '.join(serials)}) and no --serial given. "
            "Fix: pass --serial SERIAL (repeatable) or --all"
        )


class UnauthorizedDeviceError(DeviceBenchError):
    def __init__(self, serial: str) -> None:
        self.serial = serial
        super().__init__(
            f"device {serial} is unauthorized. Fix: unlock the phone and accept the "
            "'Allow USB debugging?' prompt (if none shows: revoke USB debugging authorizations in "
            "Developer options, replug, and accept)"
        )


class DeviceGoneError(DeviceBenchError):
    def __init__(self, serial: str, detail: str = "") -> None:
        self.serial = serial
        extra = f" ({detail.strip()})" if detail.strip() else ""
        super().__init__(
            f"device {serial} disconnected or went offline{extra}. Fix: reconnect it, check "
            "`adb devices`, then rerun with --resume RESULTS.json to run only the missing cells"
        )


class PermissionDeniedError(DeviceBenchError):
    def __init__(self, serial: str, path: str) -> None:
        super().__init__(
            f"{serial}: permission denied running {path}, even after `chmod 755`. Fix: push "
            "binaries under /data/local/tmp (other folders such as /sdcard are mounted noexec), "
            "or pass --remote-dir to an executable location"
        )


class ExecFormatError(DeviceBenchError):
    def __init__(self, serial: str, path: str, abi: str) -> None:
        super().__init__(
            f"{serial}: {path} is not a binary for this device (ABI {abi or 'unknown'}). Fix: pass "
            "the benchmark binary built for that ABI (e.g. android_arm64 for arm64-v8a)"
        )


class NoSpaceError(DeviceBenchError):
    def __init__(self, serial: str, remote: str) -> None:
        super().__init__(
            f"{serial}: no space left on the device while writing {remote}. Fix: free space on "
            "/data (e.g. `adb shell rm -r /data/local/tmp/device-bench-*`) and rerun"
        )


class ToolFailedError(DeviceBenchError):
    def __init__(self, tool: str, status: int, output: str) -> None:
        self.output = output
        super().__init__(f"{tool} exited with status {status}: {_first_lines(output)}")


class ParseError(DeviceBenchError):
    def __init__(self, tool: str, output: str, missing: str) -> None:
        self.output = output
        super().__init__(
            f"could not read {tool} output: no {missing} found. First lines were: "
            f"{_first_lines(output)}. Fix: check the binary is the {tool} benchmark tool and that "
            "it ran to the end (rerun the command by hand with `adb shell`)"
        )


class UnknownNameError(DeviceBenchError):
    exit_code = 2

    def __init__(self, kind: str, name: str, valid: Sequence[str]) -> None:
        super().__init__(f"unknown {kind} {name!r}; one of: {', '.join(sorted(valid))}")


class BundleError(DeviceBenchError):
    def __init__(self, path: str, problem: str, fix: str) -> None:
        super().__init__(f"{path}: {problem}. Fix: {fix}")


class ResultsError(DeviceBenchError):
    def __init__(self, path: str, problem: str, fix: str) -> None:
        super().__init__(f"{path}: {problem}. Fix: {fix}")


def _first_lines(text: str, n: int = 5) -> str:
    """Quote the start of a tool's output: the part that says what kind of output it is."""
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip()][:n]
    return " | ".join(lines) if lines else "<no output>"
