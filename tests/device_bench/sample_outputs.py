"""Verbatim benchmark outputs (see samples/README.md for where each comes from)."""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).parent / "samples"


def read_sample(name: str) -> str:
    return (SAMPLES / name).read_text()


TFLITE_SAMPLES = sorted(p.name for p in SAMPLES.glob("tflite_*.txt"))
ORT_SAMPLES = sorted(p.name for p in SAMPLES.glob("ort_*.txt"))
