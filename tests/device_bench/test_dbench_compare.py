"""compare: regressions beyond the threshold, lost cells, results files, tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device_bench.compare import compare, parse_threshold
from device_bench.errors import ResultsError, UsageError
from device_bench.results import (
    ArtifactRef,
    BenchSettings,
    BundleRef,
    Cell,
    DeviceInfo,
    DeviceRun,
    Latency,
    Measurement,
    RunResult,
    load,
    save,
)
from device_bench.table import comparison_markdown, results_html, results_markdown


def _result(
    values: dict[tuple[str, str], float | None], serial: str = "R58M1", model: str = "Pixel 7"
) -> RunResult:
    cells = []
    for (variant, provider), avg in values.items():
        ref = ArtifactRef(
            path=f"models/face_embedder/{variant}.onnx",
            sha256="ab" * 32,
            size_bytes=10,
            model="face_embedder",
            variant=variant,
            format="onnx",
        )
        measurement = None if avg is None else Measurement(latency=Latency(avg_ms=avg), output_format="x")
        status = "failed" if avg is None else "ok"
        cells.append(
            Cell(
                device=serial,
                artifact=ref,
                tool="ort",
                provider=provider,
                status=status,
                measurement=measurement,
            )
        )
    return RunResult(
        run_id="r",
        created_at="2026-01-01T00:00:00+00:00",
        bundle=BundleRef(root="dist/faceid-1.4.0"),
        settings=BenchSettings(),
        devices=[DeviceRun(device=DeviceInfo(serial=serial, model=model), status="complete")],
        cells=cells,
    )


def test_regression_beyond_threshold_only() -> None:
    base = _result({("fp32", "cpu"): 10.0, ("int8-qdq", "cpu"): 5.0, ("fp16", "cpu"): 8.0})
    new = _result({("fp32", "cpu"): 11.5, ("int8-qdq", "cpu"): 5.4, ("fp16", "cpu"): 6.0})
    result = compare(base, new, 10.0)
    verdicts = {r.artifact: r.verdict for r in result.rows}
    assert verdicts == {
        "models/face_embedder/fp32.onnx": "regression",  # +15 %
        "models/face_embedder/int8-qdq.onnx": "same",  # +8 %
        "models/face_embedder/fp16.onnx": "improvement",  # -25 %
    }
    assert [r.change_pct for r in result.regressions] == [pytest.approx(15.0)]
    assert result.failed
    assert not compare(base, new, 20.0).failed


def test_a_cell_that_stopped_working_fails_the_comparison() -> None:
    base = _result({("fp32", "cpu"): 10.0})
    new = _result({("fp32", "cpu"): None, ("fp32", "nnapi"): 4.0})
    result = compare(base, new, 10.0)
    assert [(r.provider, r.verdict) for r in result.rows] == [("cpu", "lost"), ("nnapi", "new")]
    assert result.failed and not result.regressions


def test_match_by_device_model_across_units() -> None:
    base = _result({("fp32", "cpu"): 10.0}, serial="A")
    new = _result({("fp32", "cpu"): 10.1}, serial="B")
    assert [r.verdict for r in compare(base, new, 10.0).rows] == ["lost", "new"]
    assert [r.verdict for r in compare(base, new, 10.0, match_device="model").rows] == ["same"]


def test_threshold_syntax() -> None:
    assert parse_threshold("10%") == 10.0 and parse_threshold("7.5") == 7.5
    with pytest.raises(UsageError, match="not a percentage"):
        parse_threshold("ten")


def test_results_round_trip_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    original = _result({("fp32", "cpu"): 10.0})
    save(original, path)
    assert load(path) == original
    raw = json.loads(path.read_text())
    raw["schema_version"] = 99
    path.write_text(json.dumps(raw))
    with pytest.raises(ResultsError, match="schema_version 99"):
        load(path)
    path.write_text("| a | table |")
    with pytest.raises(ResultsError, match="not JSON"):
        load(path)
    with pytest.raises(ResultsError, match="no such file"):
        load(tmp_path / "absent.json")


def test_tables_show_artifact_provider_device_grid() -> None:
    result = _result({("fp32", "cpu"): 10.0, ("int8-qdq", "cpu"): None})
    md = results_markdown(result)
    assert "| artifact | tool | provider | Pixel 7 (R58M1) avg ms |" in md
    assert "| models/face_embedder/fp32.onnx | ort | cpu | 10.00 |" in md
    assert "| models/face_embedder/int8-qdq.onnx | ort | cpu | failed |" in md
    assert "<td>10.00</td>" in results_html(result)
    cmp_md = comparison_markdown(compare(result, _result({("fp32", "cpu"): 12.0}), 10.0))
    assert (
        "| R58M1 | models/face_embedder/fp32.onnx | ort | cpu | 10.00 | 12.00 | +20.0% | REGRESSION |"
        in cmp_md
    )
