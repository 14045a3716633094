"""Parsers for the benchmark tools' text output, one module per tool, both old and new formats."""

from device_bench.parsers.ort import parse_ort
from device_bench.parsers.tflite import parse_tflite

__all__ = ["parse_ort", "parse_tflite"]
