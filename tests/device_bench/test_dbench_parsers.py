"""Parsers against verbatim outputs of benchmark_model and onnxruntime_perf_test, old and new."""

from __future__ import annotations

import pytest
from sample_outputs import ORT_SAMPLES, SAMPLES, TFLITE_SAMPLES, read_sample

from device_bench.errors import ParseError, UnknownNameError
from device_bench.parsers import parse_ort, parse_tflite
from device_bench.tools import TOOLS, ToolRegistry


def test_tflite_2019_scientific_notation_and_delta_memory() -> None:
    m = parse_tflite(read_sample("tflite_2019_delta.txt"))
    # count=50 ... avg=2.95034e+06 (us); the warm-up line "count=1 curr=3512391" has no avg.
    assert m.latency.avg_ms == pytest.approx(2950.34)
    assert m.latency.min_ms == pytest.approx(2727.568)
    assert m.latency.max_ms == pytest.approx(3189.954)
    assert m.latency.std_ms == pytest.approx(109.798)
    assert m.latency.count == 50
    assert m.latency.p50_ms is None
    assert m.init_ms == pytest.approx(17.187)
    assert m.first_ms == pytest.approx(3512.391)
    assert m.warmup_avg_ms == pytest.approx(3512.39)
    assert m.peak_memory_mb == pytest.approx(46.0859)
    assert m.memory_kind == "rss-delta-overall"


def test_tflite_peak_memory_spelling() -> None:
    m = parse_tflite(read_sample("tflite_peak_spelling.txt"))
    assert m.latency.avg_ms == pytest.approx(249.684)
    assert m.peak_memory_mb == pytest.approx(138.809)


def test_tflite_info_prefix_and_percentiles_take_the_regular_phase() -> None:
    m = parse_tflite(read_sample("tflite_info_percentiles.txt"))
    assert m.latency.count == 50  # not the warm-up "count=1" line
    assert m.latency.avg_ms == pytest.approx(1240.27)
    assert m.latency.p50_ms == pytest.approx(1239.807)
    assert m.latency.p95_ms == pytest.approx(1247.415)
    assert m.init_ms == pytest.approx(5.579)
    assert m.output_format == "tflite-percentiles"


def test_tflite_logcat_prefix_and_xnnpack_partitions() -> None:
    m = parse_tflite(read_sample("tflite_logcat_xnnpack.txt"))
    assert m.latency.count == 10  # the warm-up phase printed count=2 with an avg too
    assert m.latency.avg_ms == pytest.approx(295.775)
    assert m.latency.p50_ms == pytest.approx(286.332)
    assert m.peak_memory_mb == pytest.approx(115.211)
    [part] = m.partitions
    assert (part.delegate, part.partitions, part.nodes_delegated, part.nodes_total) == (
        "xnnpack",
        21,
        792,
        836,
    )


def test_tflite_periodic_peak_memory_is_preferred() -> None:
    m = parse_tflite(read_sample("tflite_periodic_peak.txt"))
    assert m.latency.count == 1061
    assert m.latency.avg_ms == pytest.approx(56.2658)
    assert m.peak_memory_mb == pytest.approx(93.2383)
    assert m.memory_kind == "peak-periodic-monitoring"
    assert m.partitions[0].partitions == 1


def test_tflite_old_partition_line_without_total() -> None:
    out = read_sample("tflite_peak_spelling.txt") + (
        "INFO: Replacing 117 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 2 partitions.\n"
    )
    [part] = parse_tflite(out).partitions
    assert (part.nodes_delegated, part.nodes_total, part.partitions) == (117, None, 2)


def test_ort_2020_average_and_working_set() -> None:
    m = parse_ort(read_sample("ort_2020_acl.txt"))
    assert m.latency.avg_ms == pytest.approx(144.871)
    assert m.latency.count == 10
    assert m.init_ms == pytest.approx(127.918)
    assert m.peak_memory_mb == pytest.approx(158171136 / 2**20)


def test_ort_2020_no_space_after_colon_with_warning_lines() -> None:
    m = parse_ort(read_sample("ort_2020_warning_prefix.txt"))
    assert m.latency.avg_ms == pytest.approx(734.606)
    assert m.init_ms == pytest.approx(1841.49)
    assert m.peak_memory_mb is None


def test_ort_latency_is_sec_format() -> None:
    m = parse_ort(read_sample("ort_2023_latency_is_sec.txt"))
    assert m.latency.avg_ms == pytest.approx(58.8053)
    assert m.latency.count == 1000
    assert m.latency.min_ms == pytest.approx(55.9777)
    assert m.latency.p50_ms == pytest.approx(58.7108)
    assert m.latency.p90_ms == pytest.approx(59.9845)
    assert m.latency.p99_ms == pytest.approx(61.9517)


def test_ort_2025_total_and_percentile_block() -> None:
    m = parse_ort(read_sample("ort_2025_total.txt"))
    assert m.latency.avg_ms == pytest.approx(98.961997)
    assert m.latency.p50_ms == pytest.approx(99.5086)
    assert m.latency.p90_ms == pytest.approx(101.519)
    assert m.latency.max_ms == pytest.approx(101.519)
    assert m.latency.count == 5
    assert m.first_ms == pytest.approx(196)
    assert m.init_ms == pytest.approx(217.932)
    assert m.peak_memory_mb == pytest.approx(271122432 / 2**20)
    assert m.output_format == "ort-average-total"


def test_ort_nnapi_partition_summary() -> None:
    # The line NnapiExecutionProvider::GetCapability logs (onnxruntime nnapi_execution_provider.cc).
    line = (
        "2024-05-02 10:11:12.345 onnxruntime_perf_test[W:onnxruntime:, nnapi_execution_provider.cc:225 "
        "GetCapability] NnapiExecutionProvider::GetCapability, number of partitions supported by NNAPI: 62 "
        "number of nodes in the graph: 988 number of nodes supported by NNAPI: 197\n"
    )
    m = parse_ort(line + read_sample("ort_2025_total.txt"))
    [part] = m.partitions
    assert (part.delegate, part.partitions, part.nodes_total, part.nodes_delegated) == ("nnapi", 62, 988, 197)


GARBAGE = "Segmentation fault\nlinker: CANNOT LINK EXECUTABLE\n\nsomething else\n"


@pytest.mark.parametrize("parse", [parse_tflite, parse_ort])
def test_unknown_output_is_an_error_quoting_the_first_lines(parse) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParseError) as info:
        parse(GARBAGE)
    assert "Segmentation fault | linker: CANNOT LINK EXECUTABLE | something else" in str(info.value)


@pytest.mark.parametrize("parse", [parse_tflite, parse_ort])
def test_the_other_tools_output_is_not_silently_read(parse) -> None:  # type: ignore[no-untyped-def]
    other = read_sample("ort_2025_total.txt" if parse is parse_tflite else "tflite_2019_delta.txt")
    with pytest.raises(ParseError):
        parse(other)


def test_empty_output_says_so() -> None:
    with pytest.raises(ParseError, match="<no output>"):
        parse_tflite("")


def test_every_registered_tool_has_samples_that_parse() -> None:
    """Meta-test: a tool added to the registry must come with verbatim samples of its output."""
    by_tool = {"tflite": TFLITE_SAMPLES, "ort": ORT_SAMPLES}
    assert set(TOOLS.names()) == set(by_tool)
    for name, files in by_tool.items():
        assert len(files) >= 2, f"{name}: need old and new output samples in {SAMPLES}"
        for file in files:
            assert TOOLS.get(name).parse(read_sample(file)).latency.avg_ms > 0


def test_registry_refuses_duplicates_and_lists_names_on_a_miss() -> None:
    registry = ToolRegistry()

    @registry.register("x")
    class X(type(TOOLS.get("ort"))):  # type: ignore[misc]
        pass

    with pytest.raises(ValueError, match="registered twice"):
        registry.register("x")(X)
    with pytest.raises(UnknownNameError, match="unknown benchmark tool 'tfl'; one of: ort, tflite"):
        TOOLS.get("tfl")
