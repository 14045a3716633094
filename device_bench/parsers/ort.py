"""``onnxruntime_perf_test`` output -> Measurement.

Formats handled (samples in tests/device_bench/samples):
- ``Session creation time cost: 0.127918 s`` (and without the space after the colon, ORT 1.1)
- ``First inference time cost: 196 ms`` (newer)
- ``Average inference time cost: 144.871 ms`` (1.x), ``Average inference time cost total: 98.96 ms``
  (1.2x), ``Average time cost: 58.8 ms`` (oldest)
- ``Total inference requests: 10`` / ``Total iterations: 1000`` / ``Runs:5``
- ``Peak working set size: 158171136 bytes``
- latency block (``-s``): ``P50 Latency: 0.0995 s`` (new) or ``P50 Latency is 0.0587 sec`` (old), with
  Min/Max/P90/P95/P99/P999.
- EP partition summary: ``number of partitions supported by NNAPI: 62 number of nodes in the graph:
  988 number of nodes supported by NNAPI: 197`` (NnapiExecutionProvider::GetCapability; CoreML too).
"""

from __future__ import annotations

import re

from device_bench.errors import ParseError
from device_bench.parsers.common import NUMBER, clean_lines
from device_bench.results import Latency, Measurement, Partition

_SESSION = re.compile(rf"^Session creation time cost:\s*(?P<v>{NUMBER})\s*s")
_FIRST = re.compile(rf"^First inference time cost:\s*(?P<v>{NUMBER})\s*ms")
_AVERAGE = re.compile(rf"^Average (?:inference )?time cost(?P<total> total)?:\s*(?P<v>{NUMBER})\s*ms")
_COUNT = re.compile(r"^(?:Total inference requests|Total iterations|Runs):\s*(?P<v>\d+)")
_PEAK = re.compile(r"^Peak working set size:\s*(?P<v>\d+)(?:\s*bytes)?")
_LATENCY = re.compile(
    rf"^(?P<which>Min|Max|P50|P90|P95|P99|P999) Latency(?: is|:)\s*(?P<v>{NUMBER})\s*(?:s|sec)\b"
)
_PARTITIONS = re.compile(
    r"number of partitions supported by (?P<ep>\w+): (?P<parts>\d+)\s+number of nodes in the graph: "
    r"(?P<total>\d+)\s+number of nodes supported by \w+: (?P<done>\d+)"
)


def parse_ort(output: str) -> Measurement:
    lines = clean_lines(output)
    values: dict[str, float] = {}
    era = "ort-average"
    partitions: list[Partition] = []
    for line in lines:
        if m := _SESSION.match(line):
            values["init_ms"] = float(m.group("v")) * 1000.0
        elif m := _FIRST.match(line):
            values["first_ms"] = float(m.group("v"))
        elif m := _AVERAGE.match(line):
            values["avg_ms"] = float(m.group("v"))
            if m.group("total"):
                era = "ort-average-total"
        elif m := _COUNT.match(line):
            values.setdefault("count", float(m.group("v")))
        elif m := _PEAK.match(line):
            values["peak_mb"] = float(m.group("v")) / (1024.0 * 1024.0)
        elif m := _LATENCY.match(line):
            values[m.group("which").lower()] = float(m.group("v")) * 1000.0
        if m := _PARTITIONS.search(line):
            partitions.append(
                Partition(
                    delegate=m.group("ep").lower(),
                    partitions=int(m.group("parts")),
                    nodes_delegated=int(m.group("done")),
                    nodes_total=int(m.group("total")),
                )
            )
    if "avg_ms" not in values:
        raise ParseError("onnxruntime_perf_test", output, "'Average inference time cost' line")
    count = values.get("count")
    return Measurement(
        latency=Latency(
            avg_ms=values["avg_ms"],
            min_ms=values.get("min"),
            max_ms=values.get("max"),
            p50_ms=values.get("p50"),
            p90_ms=values.get("p90"),
            p95_ms=values.get("p95"),
            p99_ms=values.get("p99"),
            count=int(count) if count is not None else None,
        ),
        init_ms=values.get("init_ms"),
        first_ms=values.get("first_ms"),
        peak_memory_mb=values.get("peak_mb"),
        memory_kind="peak-working-set" if "peak_mb" in values else None,
        partitions=partitions,
        output_format=era,
    )
