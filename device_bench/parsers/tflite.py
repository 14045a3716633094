"""TFLite/LiteRT ``benchmark_model`` output -> Measurement.

Formats handled (samples in tests/device_bench/samples):
- ``count=50 first=.. curr=.. min=.. max=.. avg=2.95034e+06 std=..`` per phase (warm-up, then the
  regular runs); newer builds append ``p5=.. median=.. p95=..``. All in microseconds.
- ``Inference timings in us: Init: .., First inference: .., Warmup (avg): .., Inference (avg): ..``
- memory in two spellings: ``Memory footprint delta from the start of the tool (MB): init= overall=``
  and ``Peak memory footprint (MB): init= overall=``; plus, when the tool monitored it,
  ``Overall peak memory footprint (MB) via periodic monitoring: X`` (preferred: a true peak).
- delegate partitions: ``Replacing X out of Y node(s) with delegate (NAME) node, yielding P partitions``
  and the older ``Replacing X node(s) with delegate (NAME) node, yielding P partitions``.
Anything without a latency is a ParseError quoting the first lines: never a silent zero.
"""

from __future__ import annotations

import re

from device_bench.errors import ParseError
from device_bench.parsers.common import NUMBER, clean_lines
from device_bench.results import Latency, Measurement, Partition

_COUNT = re.compile(rf"^count=(?P<count>\d+)(?P<rest>(?:\s+\w+={NUMBER})*)\s*$")
_FIELD = re.compile(rf"(\w+)=({NUMBER})")
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: (?P<init>{NUMBER}), First inference: (?P<first>{NUMBER}), "
    rf"Warmup \(avg\): (?P<warmup>{NUMBER}), Inference \(avg\): (?P<avg>{NUMBER})"
)
_MEMORY = re.compile(
    rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
    rf"init=(?P<init>{NUMBER}) overall=(?P<overall>{NUMBER})"
)
_PERIODIC = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<mb>{NUMBER})")
_PARTITIONS = re.compile(
    r"Replacing (?P<done>\d+)(?: out of (?P<total>\d+))? node\(s\) with delegate \((?P<name>[^)]+)\) node, "
    r"yielding (?P<parts>\d+) partitions"
)
_DELEGATE_NAMES = {
    "TfLiteXNNPackDelegate": "xnnpack",
    "TfLiteNnapiDelegate": "nnapi",
    "TfLiteGpuDelegateV2": "gpu",
    "TfLiteGpuDelegate": "gpu",
}


def parse_tflite(output: str) -> Measurement:
    lines = clean_lines(output)
    runs: dict[str, float] | None = None
    timings: re.Match[str] | None = None
    memory: re.Match[str] | None = None
    periodic: re.Match[str] | None = None
    partitions: list[Partition] = []
    for line in lines:
        if count := _COUNT.match(line):
            fields = {k: float(v) for k, v in _FIELD.findall(count.group("rest"))}
            if "avg" in fields:
                # The last count line with an average is the regular (non warm-up) phase.
                runs = {**fields, "count": float(count.group("count"))}
        elif m := _TIMINGS.search(line):
            timings = m
        elif m := _MEMORY.search(line):
            memory = m
        elif m := _PERIODIC.search(line):
            periodic = m
        elif m := _PARTITIONS.search(line):
            partitions.append(
                Partition(
                    delegate=_DELEGATE_NAMES.get(m.group("name"), m.group("name")),
                    partitions=int(m.group("parts")),
                    nodes_delegated=int(m.group("done")),
                    nodes_total=int(m.group("total")) if m.group("total") else None,
                )
            )
    if runs is None and timings is None:
        raise ParseError("benchmark_model", output, "'count=... avg=...' or 'Inference timings in us' line")

    def ms(value: float | None) -> float | None:
        return None if value is None else value / 1000.0

    if runs is not None:
        latency = Latency(
            avg_ms=runs["avg"] / 1000.0,
            min_ms=ms(runs.get("min")),
            max_ms=ms(runs.get("max")),
            p50_ms=ms(runs.get("median")),
            p95_ms=ms(runs.get("p95")),
            std_ms=ms(runs.get("std")),
            count=int(runs["count"]),
        )
    else:
        assert timings is not None
        latency = Latency(avg_ms=float(timings.group("avg")) / 1000.0)
    peak: float | None = None
    kind: str | None = None
    if periodic is not None:
        peak, kind = float(periodic.group("mb")), "peak-periodic-monitoring"
    elif memory is not None:
        peak, kind = float(memory.group("overall")), "rss-delta-overall"
    era = "tflite-percentiles" if latency.p50_ms is not None else "tflite-count-avg"
    if runs is None:
        era = "tflite-timings-only"
    return Measurement(
        latency=latency,
        init_ms=ms(float(timings.group("init"))) if timings else None,
        first_ms=ms(float(timings.group("first"))) if timings else None,
        warmup_avg_ms=ms(float(timings.group("warmup"))) if timings else None,
        peak_memory_mb=peak,
        memory_kind=kind,
        partitions=partitions,
        output_format=era,
    )
