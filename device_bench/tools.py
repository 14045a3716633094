"""Registry of on-device benchmark tools, by name, filled by a decorator.

Each tool is a small class holding facts as data (artifact formats it runs, provider -> flags, the
default binary name) plus two methods: its command line and its output parser. Adding a tool = one
class here and one parser module; the runners do not change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from device_bench.errors import UnknownNameError
from device_bench.parsers import parse_ort, parse_tflite
from device_bench.results import Measurement

PROVIDERS = ("cpu", "xnnpack", "nnapi", "gpu")
"""Provider names accepted on the command line; each tool maps the ones it supports to flags."""


@dataclass(frozen=True)
class BenchRequest:
    """Everything a command line needs, with paths as the device sees them."""

    binary: str
    model: str
    provider: str
    threads: int
    runs: int
    warmup: int


class BenchTool(ABC):
    name: ClassVar[str]
    formats: ClassVar[frozenset[str]]
    binary_name: ClassVar[str]
    cli_option: ClassVar[str]
    provider_flags: ClassVar[Mapping[str, tuple[str, ...]]]

    def supports(self, provider: str) -> bool:
        return provider in self.provider_flags

    @abstractmethod
    def arguments(self, request: BenchRequest) -> list[str]:
        """argv (binary first) for one benchmark of one model with one provider."""

    @abstractmethod
    def parse(self, output: str) -> Measurement:
        """The tool's printed output -> Measurement; raises ParseError on unknown output."""


T = TypeVar("T", bound=type[BenchTool])


class ToolRegistry:
    """Name -> tool. Filled once at import by ``@TOOLS.register``; duplicates are refused."""

    def __init__(self) -> None:
        self._tools: dict[str, BenchTool] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(cls: T) -> T:
            if name in self._tools:
                raise ValueError(f"benchmark tool {name!r} registered twice")
            cls.name = name
            self._tools[name] = cls()
            return cls

        return decorate

    def get(self, name: str) -> BenchTool:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownNameError("benchmark tool", name, list(self._tools)) from None

    def names(self) -> list[str]:
        return sorted(self._tools)

    def for_format(self, fmt: str) -> BenchTool | None:
        return next((t for t in self._tools.values() if fmt in t.formats), None)

    def formats(self) -> set[str]:
        return {f for t in self._tools.values() for f in t.formats}


TOOLS = ToolRegistry()


@TOOLS.register("tflite")
class TfliteBenchmarkModel(BenchTool):
    """LiteRT/TFLite ``benchmark_model``. "cpu" turns XNNPACK off explicitly: recent builds apply it by
    default, and cpu vs xnnpack is exactly the comparison a release engineer wants to see."""

    formats = frozenset({"tflite"})
    binary_name = "benchmark_model"
    cli_option = "--tflite-benchmark"
    provider_flags: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "cpu": ("--use_xnnpack=false",),
        "xnnpack": ("--use_xnnpack=true",),
        "nnapi": ("--use_nnapi=true",),
        "gpu": ("--use_gpu=true",),
    }

    def arguments(self, request: BenchRequest) -> list[str]:
        return [
            request.binary,
            f"--graph={request.model}",
            f"--num_threads={request.threads}",
            f"--num_runs={request.runs}",
            f"--warmup_runs={request.warmup}",
            "--report_peak_memory_footprint=true",
            *self.provider_flags[request.provider],
        ]

    def parse(self, output: str) -> Measurement:
        return parse_tflite(output)


@TOOLS.register("ort")
class OrtPerfTest(BenchTool):
    """``onnxruntime_perf_test``: runs .onnx and .ort files as they are. ``-I`` generates inputs (no
    test_data_set folder needed), ``-s`` prints the percentile block. It has no warm-up count flag:
    it always does one first inference, reported separately by recent versions."""

    formats = frozenset({"onnx", "ort"})
    binary_name = "onnxruntime_perf_test"
    cli_option = "--ort-perf-test"
    provider_flags: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "cpu": ("-e", "cpu"),
        "xnnpack": ("-e", "xnnpack"),
        "nnapi": ("-e", "nnapi"),
    }

    def arguments(self, request: BenchRequest) -> list[str]:
        return [
            request.binary,
            "-m",
            "times",
            "-r",
            str(request.runs),
            *self.provider_flags[request.provider],
            "-x",
            str(request.threads),
            "-I",
            "-s",
            request.model,
        ]

    def parse(self, output: str) -> Measurement:
        return parse_ort(output)
