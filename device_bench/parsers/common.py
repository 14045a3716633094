"""Pieces both parsers share: number syntax and log-prefix stripping."""

from __future__ import annotations

import re

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
"""Plain, decimal and scientific notation: benchmark_model prints ``avg=2.95034e+06``."""

# Prefixes seen in front of the tools' lines: indentation from docs, logcat ("07-08 15:40:34.274
# I/tflite  ( 6794): " or threadtime "07-14 13:23:08.136 25289 25289 I tflite  : "), and the TFLite
# logger's own "INFO: " / "VERBOSE: " / "WARNING: ".
_PREFIXES = (
    re.compile(r"^\s+"),
    re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+(?:\d+\s+\d+\s+)?[VDIWEF][/ ]\S+\s*(?:\(\s*\d+\))?\s*:\s?"),
    re.compile(r"^(?:INFO|VERBOSE|WARNING|WARN|ERROR|DEBUG): ?"),
)


def clean_lines(output: str) -> list[str]:
    """The output's lines with log prefixes removed, so one regex per fact is enough."""
    lines = []
    for raw in output.replace("\r\n", "\n").split("\n"):
        line = raw
        for prefix in _PREFIXES:
            line = prefix.sub("", line, count=1)
        lines.append(line.strip())
    return lines
