"""report.md / report.html from a hand-built BuildResult: table cells, n/a, self-contained HTML."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from packager.report import render_html, render_markdown, write_report
from packager.results import (
    BuildResult,
    CosineStats,
    GateResult,
    IOInfo,
    Latency,
    ModelResult,
    ModeResult,
    VariantResult,
    Verification,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _verification(auc: float, tar: float | None) -> Verification:
    return Verification(
        auc=auc,
        accuracy=0.95,
        best_threshold=0.363,
        tar_at_far={"1e-3": tar, "1e-4": None},
        roc_fpr=[0.0, 0.001, 0.01, 0.1, 1.0],
        roc_tpr=[0.0, 0.5, 0.8, 0.95, 1.0],
        positives=600,
        negatives=2400,
    )


def _mode(
    mode: str, mean: float, auc: float, tar: float | None, flips: float | None, p50: float
) -> ModeResult:
    return ModeResult(
        mode=mode,
        cosine=CosineStats(mean=mean, min=mean - 0.02, p1=mean - 0.01, count=200),
        verification=_verification(auc, tar),
        decision_flips=flips,
        latency=Latency(p50_ms=p50, p90_ms=p50 * 1.1, runs=50, threads=1),
    )


def _gates(mean: float, drop: float, flips: float) -> list[GateResult]:
    return [
        GateResult(name="min_mean_cosine", metric="mean cosine vs FP32", value=mean, bar=0.99,
                   comparison=">=", mode="reference", passed=mean >= 0.99),
        GateResult(name="max_auc_drop", metric="AUC drop vs FP32", value=drop, bar=0.01,
                   comparison="<=", mode="reference", passed=drop <= 0.01),
        GateResult(name="max_decision_flips", metric="decision flips vs FP32", value=flips, bar=0.01,
                   comparison="<=", mode="reference", passed=flips <= 0.01),
    ]  # fmt: skip


def _variant(name: str, size: int, modes: dict[str, ModeResult], gates: list[GateResult], **details: object):
    return VariantResult(
        variant=name,
        file=f"models/face_embedder.{name}.onnx",
        sha256="ab" * 32,
        size_bytes=size,
        size_ratio=size / 38_700_000,
        modes=modes,
        gate_mode="reference",
        gates=gates,
        passed=all(g.passed for g in gates),
        details=dict(details),
    )


@pytest.fixture
def build() -> BuildResult:
    fp32 = _variant(
        "fp32",
        38_700_000,
        {"default": _mode("default", 1.0, 0.9950, 0.91, 0.0, 20.0),
         "reference": _mode("reference", 1.0, 0.9950, 0.91, 0.0, 31.0)},
        [],
        opset_upgraded="11 -> 13",
    )  # fmt: skip
    fp16 = _variant(
        "fp16",
        19_350_000,
        {"default": _mode("default", 0.99998, 0.9949, 0.905, 0.001, 19.0),
         "reference": _mode("reference", 0.99998, 0.9949, 0.905, 0.001, 30.0)},
        _gates(0.99998, 0.0001, 0.001),
    )  # fmt: skip
    int8 = _variant(
        "int8-qdq",
        9_800_000,
        {"default": _mode("default", 0.9150, 0.9500, None, 0.08, 12.5),
         "reference": _mode("reference", 0.9780, 0.9830, None, 0.025, 28.0)},
        _gates(0.9780, 0.0120, 0.025),
        calibration="percentile 99.999",
        excluded_nodes=["/stem/Conv", "a|b"],
    )  # fmt: skip
    model = ModelResult(
        name="face_embedder",
        source="models/sface.onnx",
        source_sha256="cd" * 32,
        opset=13,
        inputs=[IOInfo(name="data", dtype="float32", shape=[1, 3, 112, 112])],
        outputs=[IOInfo(name="fc1", dtype="float32", shape=[1, 128])],
        preprocessing={"size": [112, 112], "channels": "RGB"},
        evaluation={"images": 200, "pairs": 3000, "threshold": 0.363},
        reference=fp32,
        variants=[fp16, int8],
    )
    return BuildResult(
        project="faceid",
        version="1.4.0",
        config_sha256="ef" * 32,
        gates_enforced=True,
        passed=False,
        tool_versions={"onnxruntime": "1.23.0", "onnx": "1.19.1"},
        host={"cpu": "x86_64 (no VNNI)"},
        models=[model],
        notes=["Pairs include augmented views of few identities."],
    )


def _row(markdown: str, first_cell: str, after: str = "### Summary") -> list[str]:
    """Cells of the first table row starting with ``first_cell`` after the heading ``after``."""
    section = markdown[markdown.index(after) :]
    for line in section.splitlines():
        if line.startswith(f"| {first_cell} |"):
            return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
    raise AssertionError(f"no row {first_cell!r} after {after!r}")


def test_summary_row_of_failing_variant_uses_its_gate_mode(build: BuildResult) -> None:
    assert _row(render_markdown(build), "int8-qdq") == [
        "int8-qdq", "9.80", "0.253", "0.9780", "0.9580", "0.9830", "n/a", "2.50%", "28.00", "FAIL",
    ]  # fmt: skip


def test_summary_row_of_passing_variant(build: BuildResult) -> None:
    assert _row(render_markdown(build), "fp16") == [
        "fp16", "19.35", "0.500", "0.99998", "0.9800", "0.9949", "0.9050", "0.10%", "30.00", "PASS",
    ]  # fmt: skip


def test_reference_row_is_marked_reference_not_gated(build: BuildResult) -> None:
    assert _row(render_markdown(build), "fp32")[-1] == "baseline"


def test_mode_table_shows_both_ort_modes_and_marks_the_gated_one(build: BuildResult) -> None:
    md = render_markdown(build)
    section = md[md.index("### ORT modes") : md.index("### Verification")]
    rows = [line for line in section.splitlines() if line.startswith("| int8-qdq |")]
    assert [[cell.strip() for cell in r.split("|")[2:7]] for r in rows] == [
        ["default (x86 kernels)", "", "0.9150", "0.8950", "0.9050"],
        ["reference (optimizations off; QDQ in float)", "yes", "0.9780", "0.9580", "0.9680"],
    ]
    assert "Mobile gates use the reference mode" in section


def test_unmeasurable_tar_renders_na(build: BuildResult) -> None:
    row = _row(render_markdown(build), "fp16", after="### Verification")
    assert row[-2:] == ["0.9050", "n/a"]  # TAR@FAR=1e-3, TAR@FAR=1e-4


def test_failed_gate_detail_shows_value_bar_and_result(build: BuildResult) -> None:
    md = render_markdown(build)
    row = _row(md, "max_auc_drop", after="### Variant `int8-qdq`")
    assert row == ["max_auc_drop", "AUC drop vs FP32", "reference", "0.0120", "<= 0.0100", "FAIL"]


def test_variant_details_are_listed_as_literal_code(build: BuildResult) -> None:
    md = render_markdown(build)
    assert "- excluded_nodes: `/stem/Conv, a|b`" in md


def test_pipes_in_table_cells_are_escaped(build: BuildResult) -> None:
    piped = build.model_copy(update={"tool_versions": {"onnx": "1.19|local"}})
    assert "| onnx | `1.19\\|local` |" in render_markdown(piped)


def test_reference_section_lists_its_details_without_a_verdict(build: BuildResult) -> None:
    md = render_markdown(build)
    section = md[md.index("### Reference `fp32`") : md.index("### Variant `fp16`")]
    assert "- opset_upgraded: `11 -> 13`" in section
    assert "PASS" not in section and "No gates apply" not in section


def test_header_states_overall_result_and_enforcement(build: BuildResult) -> None:
    md = render_markdown(build)
    assert "**Result: FAIL** · release gates enforced" in md
    assert "| onnxruntime | `1.23.0` |" in md
    assert "- Pairs include augmented views of few identities." in md


def test_html_embeds_a_png_roc_and_links_nowhere(build: BuildResult) -> None:
    html = render_html(build)
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(uris) == 1
    assert base64.b64decode(uris[0]).startswith(PNG_MAGIC)
    assert "http://" not in html and "https://" not in html


def test_html_carries_the_same_table_cells(build: BuildResult) -> None:
    html = render_html(build)
    assert "<td>int8-qdq</td><td>9.80</td><td>0.253</td><td>0.9780</td>" in html


def test_html_escapes_result_text(build: BuildResult) -> None:
    evil = build.model_copy(update={"notes": ["<script>alert(1)</script>"]})
    html = render_html(evil)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_model_without_pairs_says_so_and_has_no_plot(build: BuildResult) -> None:
    model = build.models[0]
    strip = {
        "modes": {k: m.model_copy(update={"verification": None}) for k, m in model.reference.modes.items()}
    }
    no_pairs = build.model_copy(
        update={"models": [model.model_copy(update={"reference": model.reference.model_copy(update=strip),
                                                    "variants": []})]}
    )  # fmt: skip
    assert "No evaluation pairs" in render_markdown(no_pairs)
    assert "data:image/png" not in render_html(no_pairs)


def test_write_report_is_byte_identical_across_renders(build: BuildResult, tmp_path: Path) -> None:
    first = write_report(build, tmp_path / "a")
    second = write_report(build, tmp_path / "b")
    assert [p.name for p in first] == ["report.md", "report.html"]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert not list((tmp_path / "a").glob(".*.tmp"))


def test_findings_list_failed_variants_recipe_findings_and_optimization_fallbacks(
    build: BuildResult,
) -> None:
    from packager.results import VariantFailure

    model = build.models[0]
    fp16 = model.variants[0]
    fallback = fp16.modes["default"].model_copy(
        update={"optimization_level": "extended", "optimization_fallback": "cannot load it at level all"}
    )
    fp16 = fp16.model_copy(
        update={
            "modes": {**fp16.modes, "default": fallback},
            "details": {"findings": ["weight v of bn holds 1e+08, beyond FP16's ±65504: kept in float"]},
        }
    )
    failure = VariantFailure(
        variant="mixed", step="calibrate[face_embedder]", error="quantizer crashed", optional=True
    )
    model = model.model_copy(
        update={"variants": [fp16, *model.variants[1:]], "failed": [failure], "output": "fc1"}
    )
    markdown = render_markdown(build.model_copy(update={"models": [model]}))
    findings = markdown[markdown.index("### Findings") : markdown.index("### Failed variants")]
    assert "- mixed was not built (optional): quantizer crashed" in findings
    assert "- fp16: weight v of bn holds 1e+08" in findings
    assert "fp16 (default mode) ran at onnxruntime graph optimization level 'extended'" in findings
    assert _row(markdown, "mixed", after="### Failed variants") == [
        "mixed", "optional", "calibrate[face_embedder]", "quantizer crashed"
    ]  # fmt: skip
    assert "measured output: `fc1`" in markdown
    assert "Findings" in render_html(build.model_copy(update={"models": [model]}))
