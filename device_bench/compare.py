"""Compare two results files cell by cell and flag latency regressions beyond a threshold.

Cells match on (device, artifact path relative to the bundle root, tool, provider): the artifact path
is stable across versions (``models/face_embedder/int8-qdq.onnx``) while its sha256 is expected to
change, which is the point of comparing. ``match_device="model"`` matches phones by model name, for
a baseline taken on another unit of the same phone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from device_bench.errors import UsageError
from device_bench.results import Cell, RunResult

Metric = Literal["avg", "p50", "p90", "min"]
Verdict = Literal["regression", "improvement", "same", "lost", "new"]


@dataclass(frozen=True)
class Row:
    device: str
    artifact: str
    tool: str
    provider: str
    base_ms: float | None
    new_ms: float | None
    change_pct: float | None
    verdict: Verdict


@dataclass(frozen=True)
class Comparison:
    metric: Metric
    threshold_pct: float
    rows: list[Row]

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "regression"]

    @property
    def lost(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "lost"]

    @property
    def failed(self) -> bool:
        return bool(self.regressions or self.lost)


def parse_threshold(text: str) -> float:
    """'10%' or '10' -> 10.0 (percent)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", text)
    if not m:
        raise UsageError(f"--max-regression {text!r} is not a percentage; write e.g. 10% or 7.5")
    return float(m.group(1))


def _value(cell: Cell, metric: Metric) -> float | None:
    if cell.status != "ok" or cell.measurement is None:
        return None
    value: float | None = getattr(cell.measurement.latency, f"{metric}_ms")
    return value


def _device_names(result: RunResult, match_device: str) -> dict[str, str]:
    if match_device == "serial":
        return {}
    return {run.device.serial: run.device.model or run.device.serial for run in result.devices}


def compare(
    base: RunResult,
    new: RunResult,
    threshold_pct: float,
    metric: Metric = "avg",
    match_device: Literal["serial", "model"] = "serial",
) -> Comparison:
    base_names, new_names = _device_names(base, match_device), _device_names(new, match_device)

    def key(cell: Cell, names: dict[str, str]) -> tuple[str, str, str, str]:
        return (names.get(cell.device, cell.device), cell.artifact.path, cell.tool, cell.provider)

    base_cells = {key(c, base_names): c for c in base.cells if c.status == "ok"}
    new_cells = {key(c, new_names): c for c in new.cells if c.status != "skipped"}
    rows = []
    for k in sorted(set(base_cells) | set(new_cells)):
        before = _value(base_cells[k], metric) if k in base_cells else None
        after = _value(new_cells[k], metric) if k in new_cells else None
        if before is None and after is None:
            continue
        if before is None:
            rows.append(Row(*k, None, after, None, "new"))
            continue
        if after is None:
            rows.append(Row(*k, before, None, None, "lost"))
            continue
        change = (after - before) / before * 100.0 if before else 0.0
        verdict: Verdict = "same"
        if change > threshold_pct:
            verdict = "regression"
        elif change < -threshold_pct:
            verdict = "improvement"
        rows.append(Row(*k, before, after, change, verdict))
    return Comparison(metric=metric, threshold_pct=threshold_pct, rows=rows)
