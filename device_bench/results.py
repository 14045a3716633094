"""The results schema: one JSON file per run, versioned, the same for phones and the host.

Pydantic models so that a results file is these objects dumped as JSON, a stored file is validated
when read back (``compare`` and ``--resume`` trust nothing), and host and phone cells line up in one
table. All times are milliseconds, all memory is MB, whatever unit the tool printed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from device_bench.errors import ResultsError

SCHEMA_VERSION = 1

CellStatus = Literal["ok", "failed", "skipped", "missing"]
"""ok: measured. failed: the tool ran and failed or printed nothing readable. skipped: the
combination cannot run (e.g. provider not offered by that tool). missing: not run because the device
went away or the run stopped; ``--resume`` runs exactly these."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Latency(_Model):
    avg_ms: float
    min_ms: float | None = None
    max_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    std_ms: float | None = None
    count: int | None = None


class Partition(_Model):
    """How much of the graph one accelerator/delegate took: many partitions usually means slow."""

    delegate: str
    partitions: int
    nodes_delegated: int | None = None
    nodes_total: int | None = None


class Measurement(_Model):
    """What one benchmark run printed, in common units. ``memory_kind`` says which number the tool gave."""

    latency: Latency
    init_ms: float | None = None
    first_ms: float | None = None
    warmup_avg_ms: float | None = None
    peak_memory_mb: float | None = None
    memory_kind: str | None = None
    partitions: list[Partition] = []
    output_format: str


class DeviceInfo(_Model):
    serial: str
    model: str | None = None
    manufacturer: str | None = None
    soc: str | None = None
    board: str | None = None
    abi: str | None = None
    sdk: int | None = None
    android: str | None = None
    fingerprint: str | None = None
    battery_level: int | None = None
    battery_temp_c: float | None = None
    thermal_c: dict[str, float] = {}
    kind: Literal["android", "host"] = "android"


class ArtifactRef(_Model):
    """An artifact as the manifest describes it; ``path`` is relative to the bundle root."""

    path: str
    sha256: str
    size_bytes: int
    model: str
    variant: str
    format: str
    platform: str = "any"


class Cell(_Model):
    device: str
    artifact: ArtifactRef
    tool: str
    provider: str
    status: CellStatus
    measurement: Measurement | None = None
    error: str | None = None
    command: str | None = None
    temp_before_c: float | None = None

    def key(self) -> tuple[str, str, str, str]:
        return (self.device, self.artifact.path, self.tool, self.provider)


class DeviceRun(_Model):
    device: DeviceInfo
    status: Literal["complete", "partial", "failed"]
    error: str | None = None


class ToolInfo(_Model):
    name: str
    binary: str | None = None
    sha256: str | None = None
    version: str | None = None


class BenchSettings(_Model):
    threads: int = 4
    runs: int = 50
    warmup: int = 10
    providers: list[str] = ["cpu"]
    cpu_mask: str | None = None
    max_temp_c: float | None = None


class BundleRef(_Model):
    root: str
    manifest: str | None = None
    project: str | None = None
    version: str | None = None


class RunResult(_Model):
    schema_version: int = SCHEMA_VERSION
    run_id: str
    created_at: str
    bundle: BundleRef
    settings: BenchSettings
    tools: list[ToolInfo] = []
    devices: list[DeviceRun] = []
    cells: list[Cell] = []

    def cells_with(self, status: CellStatus) -> list[Cell]:
        return [c for c in self.cells if c.status == status]


def save(result: RunResult, path: Path) -> None:
    """Write atomically: a crash mid-write must not destroy the partial results of a long run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(result.model_dump_json(indent=2))
        handle.write("\n")
    os.replace(tmp, path)


def load(path: Path) -> RunResult:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ResultsError(
            str(path), "no such file", "pass the results JSON written by `device-bench run`"
        ) from exc
    except json.JSONDecodeError as exc:
        raise ResultsError(
            str(path), f"not JSON ({exc})", "pass a results JSON, not the .md/.html table"
        ) from exc
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version != SCHEMA_VERSION:
        raise ResultsError(
            str(path),
            f"schema_version {version!r}, this device-bench reads {SCHEMA_VERSION}",
            "rerun the benchmark with this version, or compare with the device-bench that wrote it",
        )
    try:
        return RunResult.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ResultsError(
            str(path), f"invalid results file at {where}: {first['msg']}", "regenerate it"
        ) from exc
