"""Run the benchmark tools on phones: push, run, parse, record, clean up.

A run is a grid of cells: device x artifact x provider (the tool follows from the artifact's format).
Cells start as "missing"; each one that finishes is reported at once, so the caller can write the
results file after every cell and a phone that disappears mid-run loses nothing already measured.
``--resume`` feeds a previous results file back in and only its missing/failed cells run again.

Devices run in parallel, one thread each; within a device cells run one after another, so two
benchmarks never share a phone (they would measure each other).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shlex
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from device_bench import device_info
from device_bench.adb import Adb, AdbDevice, ShellResult
from device_bench.bundle import Artifact, Selection
from device_bench.errors import (
    AdbCommandError,
    AdbTimeoutError,
    DeviceBenchError,
    DeviceGoneError,
    ExecFormatError,
    NoSpaceError,
    ParseError,
    PermissionDeniedError,
    ToolFailedError,
    UnauthorizedDeviceError,
)
from device_bench.results import (
    BenchSettings,
    Cell,
    DeviceInfo,
    DeviceRun,
    Measurement,
    RunResult,
    ToolInfo,
)
from device_bench.tools import TOOLS, BenchRequest, BenchTool, ToolRegistry
from packager.hashing import sha256_file

log = logging.getLogger(__name__)

CellKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class DeviceRunConfig:
    """Settings for a phone run. ``binaries`` maps tool name -> local benchmark binary."""

    run_id: str
    settings: BenchSettings
    binaries: Mapping[str, Path]
    extra_files: tuple[Path, ...] = ()
    remote_root: str = "/data/local/tmp"
    bench_timeout_s: float = 900.0
    push_timeout_s: float = 300.0
    cool_timeout_s: float = 900.0
    cool_poll_s: float = 10.0
    keep_remote: bool = False
    tools: ToolRegistry = field(default=TOOLS)

    @property
    def remote_dir(self) -> str:
        return f"{self.remote_root.rstrip('/')}/device-bench-{self.run_id}"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def plan_cells(
    device: str,
    selection: Selection,
    settings: BenchSettings,
    available_tools: Sequence[str],
    tools: ToolRegistry,
) -> list[Cell]:
    """Every cell of the grid for one device: "missing" (to run) or "skipped" with the reason."""
    cells = []
    for artifact in selection.artifacts:
        tool = tools.for_format(artifact.ref.format)
        for provider in settings.providers:
            cell = Cell(
                device=device,
                artifact=artifact.ref,
                tool=tool.name if tool else "none",
                provider=provider,
                status="missing",
            )
            if tool is None:
                cell.status, cell.error = "skipped", f"no benchmark tool runs .{artifact.ref.format} files"
            elif tool.name not in available_tools:
                cell.status, cell.error = "skipped", f"no {tool.name} binary given ({_option(tool)})"
            elif not tool.supports(provider):
                valid = ", ".join(tool.provider_flags)
                cell.status, cell.error = (
                    "skipped",
                    f"{tool.name} has no provider {provider!r} (it has {valid})",
                )
            cells.append(cell)
    return cells


def _option(tool: BenchTool) -> str:
    return getattr(tool, "cli_option", "")


class DeviceRunner:
    """Runs the pending cells of one phone, in order, reporting each finished cell."""

    def __init__(self, device: AdbDevice, config: DeviceRunConfig, report: Callable[[Cell], None]) -> None:
        self.device = device
        self.config = config
        self.report = report
        self.info = DeviceInfo(serial=device.serial)
        self._remote_binaries: dict[str, str] = {}

    def run(self, cells: Sequence[Cell], artifacts: Mapping[str, Artifact]) -> DeviceRun:
        pending = [c for c in cells if c.status == "missing"]
        try:
            self.info = device_info.collect(self.device)
        except (DeviceGoneError, UnauthorizedDeviceError, AdbTimeoutError) as exc:
            return DeviceRun(device=self.info, status="failed", error=str(exc))
        if not pending:
            return DeviceRun(device=self.info, status="complete")
        done = 0
        try:
            self._prepare({c.tool for c in pending})
            broken: dict[str, str] = {}
            for path in dict.fromkeys(c.artifact.path for c in pending):
                group = [c for c in pending if c.artifact.path == path]
                remote_model = self._push_model(artifacts[path])
                for cell in group:
                    self._run_cell(cell, remote_model, broken)
                    done += 1
        except (DeviceGoneError, NoSpaceError, AdbCommandError, AdbTimeoutError) as exc:
            log.warning("%s: stopped after %d of %d cells: %s", self.device.serial, done, len(pending), exc)
            status = "partial" if done else "failed"
            return DeviceRun(device=self.info, status=status, error=str(exc))
        finally:
            self._cleanup()
        return DeviceRun(device=self.info, status="complete")

    # ---- steps -----------------------------------------------------------------------------------
    def _shell_ok(self, command: str) -> str:
        result = self.device.shell(command)
        if result.status != 0:
            raise AdbCommandError(f"adb -s {self.device.serial} shell {command}", result.output)
        return result.output

    def _prepare(self, tool_names: set[str]) -> None:
        remote_dir = self.config.remote_dir
        self._shell_ok(f"mkdir -p {remote_dir}")
        for name in sorted(tool_names):
            tool = self.config.tools.get(name)
            remote = f"{remote_dir}/{tool.binary_name}"
            self.device.push(self.config.binaries[name], remote, self.config.push_timeout_s)
            # adb push keeps the local mode; a binary copied off a Windows share or a zip is 0644.
            self._shell_ok(f"chmod 755 {remote}")
            self._remote_binaries[name] = remote
        for extra in self.config.extra_files:
            self.device.push(extra, f"{remote_dir}/{extra.name}", self.config.push_timeout_s)

    def _push_model(self, artifact: Artifact) -> str:
        remote = f"{self.config.remote_dir}/{artifact.ref.path.replace('/', '__')}"
        self.device.push(artifact.local_path, remote, self.config.push_timeout_s)
        return remote

    def _run_cell(self, cell: Cell, remote_model: str, broken: dict[str, str]) -> None:
        if cell.tool in broken:
            self._finish(cell, "failed", error=broken[cell.tool])
            return
        try:
            measurement, command, temp = self._bench(cell, remote_model)
        except (PermissionDeniedError, ExecFormatError) as exc:
            broken[cell.tool] = str(exc)
            self._finish(cell, "failed", error=str(exc))
        except (ToolFailedError, ParseError, AdbTimeoutError, device_info.DeviceTooHotError) as exc:
            self._finish(cell, "failed", error=str(exc))
        else:
            self._finish(cell, "ok", measurement=measurement, command=command, temp=temp)

    def _bench(self, cell: Cell, remote_model: str) -> tuple[Measurement, str, float | None]:
        settings = self.config.settings
        temp = None
        if settings.max_temp_c is not None:
            temp = device_info.wait_until_cool(
                self.device, settings.max_temp_c, self.config.cool_timeout_s, self.config.cool_poll_s
            )
        tool = self.config.tools.get(cell.tool)
        binary = self._remote_binaries[cell.tool]
        request = BenchRequest(
            binary, remote_model, cell.provider, settings.threads, settings.runs, settings.warmup
        )
        command = shlex.join(tool.arguments(request))
        if settings.cpu_mask:
            command = f"taskset {settings.cpu_mask} {command}"
        # onnxruntime_perf_test is often linked against libonnxruntime.so pushed beside it.
        command = f"LD_LIBRARY_PATH={self.config.remote_dir} {command}"
        result = self._shell_bench(command, binary)
        if _exec_format(result.output):
            raise ExecFormatError(self.device.serial, binary, self.info.abi or "")
        if _permission_denied(result.output, result.status, binary):
            log.info("%s: permission denied on %s, chmod +x and retry", self.device.serial, binary)
            self.device.shell(f"chmod 755 {binary}")
            result = self._shell_bench(command, binary)
            if _permission_denied(result.output, result.status, binary):
                raise PermissionDeniedError(self.device.serial, binary)
        if result.status != 0:
            raise ToolFailedError(tool.binary_name, result.status, result.output)
        return tool.parse(result.output), command, temp

    def _shell_bench(self, command: str, binary: str) -> ShellResult:
        """Run one benchmark; on timeout kill it, so the next cell never shares the phone with it."""
        try:
            return self.device.shell(command, self.config.bench_timeout_s)
        except AdbTimeoutError:
            with contextlib.suppress(DeviceBenchError):
                self.device.shell(f"pkill -f {binary}", timeout_s=30)
            raise

    def _finish(
        self,
        cell: Cell,
        status: str,
        *,
        measurement: Measurement | None = None,
        error: str | None = None,
        command: str | None = None,
        temp: float | None = None,
    ) -> None:
        updated = cell.model_copy(
            update={
                "status": status,
                "measurement": measurement,
                "error": error,
                "command": command,
                "temp_before_c": temp,
            }
        )
        log.info("%s: %s [%s] %s", cell.device, cell.artifact.path, cell.provider, status)
        self.report(updated)

    def _cleanup(self) -> None:
        if self.config.keep_remote:
            return
        with contextlib.suppress(DeviceBenchError):
            self.device.shell(f"rm -rf {self.config.remote_dir}", timeout_s=30)


def _exec_format(output: str) -> bool:
    """Android's sh on a binary for another ABI: "not executable: 32-bit ELF file" / "Exec format error"."""
    return "Exec format error" in output or "not executable: " in output


def _permission_denied(output: str, status: int, binary: str) -> bool:
    """126 is sh's "found but cannot execute"; the message must be about our binary, not a model file."""
    about_binary = any(binary in line and "Permission denied" in line for line in output.splitlines())
    return status == 126 or about_binary


def tool_infos(binaries: Mapping[str, Path]) -> list[ToolInfo]:
    return [
        ToolInfo(name=name, binary=str(path), sha256=sha256_file(path))
        for name, path in sorted(binaries.items())
    ]


def carry_over(cells: list[Cell], previous: RunResult | None) -> list[Cell]:
    """Reuse measured cells of a previous run when the artifact file is byte-identical."""
    if previous is None:
        return cells
    done = {c.key(): c for c in previous.cells if c.status == "ok"}
    merged = []
    for cell in cells:
        old = done.get(cell.key())
        keep = old is not None and cell.status == "missing" and old.artifact.sha256 == cell.artifact.sha256
        merged.append(old if keep and old is not None else cell)
    return merged


def run_devices(
    adb: Adb,
    serials: Sequence[str],
    selection: Selection,
    config: DeviceRunConfig,
    previous: RunResult | None = None,
    on_update: Callable[[RunResult], None] = lambda result: None,
) -> RunResult:
    """Run the grid on every serial in parallel; ``on_update`` sees the result after every cell."""
    result = RunResult(
        run_id=config.run_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        bundle=selection.bundle,
        settings=config.settings,
        tools=tool_infos(config.binaries),
    )
    artifacts = {a.ref.path: a for a in selection.artifacts}
    for serial in serials:
        planned = plan_cells(serial, selection, config.settings, list(config.binaries), config.tools)
        result.cells.extend(carry_over(planned, previous))
    index: dict[CellKey, int] = {c.key(): i for i, c in enumerate(result.cells)}
    lock = threading.Lock()

    def report(cell: Cell) -> None:
        with lock:
            result.cells[index[cell.key()]] = cell
            on_update(result)

    def one_device(serial: str) -> DeviceRun:
        runner = DeviceRunner(adb.device(serial), config, report)
        mine = [c for c in result.cells if c.device == serial]
        return runner.run(mine, artifacts)

    with ThreadPoolExecutor(max_workers=max(1, len(serials)), thread_name_prefix="device") as pool:
        runs = list(pool.map(one_device, serials))
    with lock:
        result.devices = runs
        on_update(result)
    return result
