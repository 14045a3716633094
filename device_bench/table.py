"""Render results as Markdown and HTML tables: artifact x tool x provider rows, one column per device.

Pure functions from results to text; the CLI decides where the text goes.
"""

from __future__ import annotations

import html

from device_bench.compare import Comparison
from device_bench.results import Cell, RunResult


def _cell_text(cell: Cell | None) -> str:
    if cell is None:
        return ""
    if cell.status != "ok" or cell.measurement is None:
        return cell.status
    lat = cell.measurement.latency
    text = f"{lat.avg_ms:.2f}"
    if lat.p90_ms is not None:
        text += f" (p90 {lat.p90_ms:.2f})"
    parts = cell.measurement.partitions
    if parts and any(p.partitions > 1 for p in parts):
        text += " " + ", ".join(f"[{p.delegate}: {p.partitions} partitions]" for p in parts)
    return text


def _grid(results: list[RunResult]) -> tuple[list[str], list[list[str]]]:
    columns: dict[str, str] = {}
    for result in results:
        for run in result.devices:
            info = run.device
            label = info.serial if info.kind == "host" else f"{info.model or '?'} ({info.serial})"
            columns.setdefault(info.serial, label)
        for cell in result.cells:
            columns.setdefault(cell.device, cell.device)
    by_row: dict[tuple[str, str, str], dict[str, Cell]] = {}
    for result in results:
        for cell in result.cells:
            by_row.setdefault((cell.artifact.path, cell.tool, cell.provider), {})[cell.device] = cell
    header = ["artifact", "tool", "provider", *(f"{label} avg ms" for label in columns.values())]
    rows = [
        [artifact, tool, provider, *(_cell_text(cells.get(serial)) for serial in columns)]
        for (artifact, tool, provider), cells in sorted(by_row.items())
    ]
    return header, rows


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _html(title: str, header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in rows)
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px 8px}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>\n<table><tr>{head}</tr>\n{body}</table></body></html>\n"
    )


def results_markdown(*results: RunResult) -> str:
    header, rows = _grid(list(results))
    return _markdown(header, rows)


def results_html(*results: RunResult) -> str:
    header, rows = _grid(list(results))
    title = "device-bench " + ", ".join(r.run_id for r in results)
    return _html(title, header, rows)


def comparison_markdown(comparison: Comparison) -> str:
    def ms(v: float | None) -> str:
        return "" if v is None else f"{v:.2f}"

    header = [
        "device",
        "artifact",
        "tool",
        "provider",
        f"base {comparison.metric} ms",
        "new",
        "change",
        "verdict",
    ]
    rows = [
        [
            r.device,
            r.artifact,
            r.tool,
            r.provider,
            ms(r.base_ms),
            ms(r.new_ms),
            "" if r.change_pct is None else f"{r.change_pct:+.1f}%",
            r.verdict.upper() if r.verdict in ("regression", "lost") else r.verdict,
        ]
        for r in comparison.rows
    ]
    return _markdown(header, rows)
