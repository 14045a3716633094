"""report.md / report.html from a hand-built BuildResult: table cells, n/a, order, self-contained HTML."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest

from packager.report import render_html, render_markdown, write_report
from packager.report.tables import (
    GATE_UNITS,
    failure_messages,
    format_gate_table,
    gate_row,
    modes_table,
    output_tables,
    summary_table,
)
from packager.results import (
    BuildResult,
    CosineStats,
    GateResult,
    IOInfo,
    Latency,
    ModelResult,
    ModeResult,
    OutputMetrics,
    VariantFailure,
    VariantResult,
    Verification,
)
from packager.validate.gates import GATES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REF = "reference (optimizations off; QDQ in float)"
DEFAULT = "default (this host's optimized kernels)"


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


def _cosine(mean: float) -> CosineStats:
    return CosineStats(mean=mean, min=mean - 0.02, p1=mean - 0.01, count=200)


def _embedding(mean: float, auc: float, tar: float | None, flips: float | None) -> OutputMetrics:
    return OutputMetrics(
        name="fc1",
        kind="embedding",
        cosine=_cosine(mean),
        sqnr_db=40.0,
        min_sqnr_db=35.0,
        psnr_db=50.0,
        max_abs=0.01,
        rel_l2=0.01,
        verification=_verification(auc, tar),
        decision_flips=flips,
    )


def _latency(p50: float) -> Latency:
    return Latency(p50_ms=p50, p90_ms=p50 * 1.1, runs=50, threads=1)


def _mode(
    mode: str, mean: float, auc: float, tar: float | None, flips: float | None, p50: float
) -> ModeResult:
    return ModeResult(mode=mode, outputs=[_embedding(mean, auc, tar, flips)], latency=_latency(p50))


def _gate(output: str, name: str, metric: str, value: float, bar: float, comparison: str) -> GateResult:
    passed = value >= bar if comparison == ">=" else value <= bar
    return GateResult(output=output, name=name, metric=metric, value=value, bar=bar,
                      comparison=comparison, mode="reference", passed=passed)  # fmt: skip


def _gates(mean: float, drop: float, flips: float) -> list[GateResult]:
    return [
        _gate("fc1", "min_mean_cosine", "mean cosine vs FP32", mean, 0.99, ">="),
        _gate("fc1", "max_auc_drop", "AUC drop vs FP32", drop, 0.01, "<="),
        _gate("fc1", "max_decision_flips", "decision flips vs FP32", flips, 0.01, "<="),
    ]


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


EVALUATION = {
    "images": 230,
    "from_images": 200,
    "from_pairs_only": 30,
    "pairs": 3000,
    "positives": 600,
    "negatives": 2400,
    "pairs_file": "pairs.txt",
    "threshold": 0.363,
    "calibration_images": 180,
}


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
        {"default": _mode("default", 0.9150, 0.9500, None, 0.08, 12.0),
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
        evaluation=dict(EVALUATION),
        reference=fp32,
        variants=[fp16, int8],
        primary_output="fc1",
        output_kinds={"fc1": "embedding"},
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


def _dense(name: str, sqnr: float, mean: float, max_abs: float, mask_iou: float | None) -> OutputMetrics:
    return OutputMetrics(name=name, kind="dense", cosine=_cosine(mean), sqnr_db=sqnr, min_sqnr_db=sqnr - 6.0,
                         psnr_db=sqnr + 10.0, max_abs=max_abs, rel_l2=0.02, mask_iou=mask_iou)  # fmt: skip


def _generic(name: str, mean: float, sqnr: float) -> OutputMetrics:
    return OutputMetrics(name=name, kind="generic", cosine=_cosine(mean), sqnr_db=sqnr,
                         min_sqnr_db=sqnr - 3.0, psnr_db=sqnr + 5.0, max_abs=0.5, rel_l2=0.1)  # fmt: skip


def _detector_mode(mode: str, heat: OutputMetrics, boxes: OutputMetrics, p50: float) -> ModeResult:
    return ModeResult(mode=mode, outputs=[heat, boxes], latency=_latency(p50))


@pytest.fixture
def detector() -> BuildResult:
    """A CenterFace-like model without pairs: a dense heatmap (mask threshold) and generic box offsets.

    int8-qdq passes the heatmap's SQNR gate by a wide margin and fails the boxes' cosine gate.
    """
    exact = [_dense("heatmap", 80.0, 1.0, 0.0, 1.0), _generic("boxes", 1.0, 80.0)]
    fp32 = _variant("fp32", 7_000_000, {"reference": _detector_mode("reference", *exact, 9.0)}, [])
    half = [_dense("heatmap", 62.5, 0.99999, 3e-05, 1.0), _generic("boxes", 0.99999, 60.0)]
    fp16 = _variant(
        "fp16",
        3_500_000,
        {"reference": _detector_mode("reference", *half, 8.0)},
        [_gate("heatmap", "min_sqnr_db", "SQNR vs FP32 (dB)", 62.5, 30.0, ">="),
         _gate("heatmap", "min_mask_iou", "mask IoU vs FP32", 1.0, 0.9, ">="),
         _gate("boxes", "min_mean_cosine", "mean cosine vs FP32", 0.99999, 0.99, ">=")],
    )  # fmt: skip
    quant = [_dense("heatmap", 35.0, 0.998, 0.04, 0.93), _generic("boxes", 0.95, 12.0)]
    int8 = _variant(
        "int8-qdq",
        1_900_000,
        {"default": _detector_mode("default", *quant, 4.0),
         "reference": _detector_mode("reference", *quant, 7.0)},
        [_gate("heatmap", "min_sqnr_db", "SQNR vs FP32 (dB)", 35.0, 30.0, ">="),
         _gate("heatmap", "min_mask_iou", "mask IoU vs FP32", 0.93, 0.9, ">="),
         _gate("boxes", "min_mean_cosine", "mean cosine vs FP32", 0.95, 0.99, ">=")],
    )  # fmt: skip
    model = ModelResult(
        name="face_detector",
        source="models/centerface.onnx",
        source_sha256="cd" * 32,
        opset=13,
        inputs=[IOInfo(name="input", dtype="float32", shape=[1, 3, 64, 64])],
        outputs=[
            IOInfo(name="heatmap", dtype="float32", shape=[1, 1, 16, 16]),
            IOInfo(name="boxes", dtype="float32", shape=[1, 4, 16, 16]),
        ],
        preprocessing={"size": [64, 64]},
        evaluation={"images": 40, "from_images": 40, "from_pairs_only": 0, "pairs": 0, "positives": 0,
                    "negatives": 0, "pairs_file": None, "threshold": None},
        reference=fp32,
        variants=[fp16, int8],
        primary_output="heatmap",
        output_kinds={"heatmap": "dense", "boxes": "generic"},
    )  # fmt: skip
    return BuildResult(
        project="detector",
        version="0.1.0",
        config_sha256="ef" * 32,
        gates_enforced=True,
        passed=False,
        tool_versions={"onnxruntime": "1.23.0"},
        host={},
        models=[model],
        notes=[],
    )


def _row(markdown: str, first_cell: str, after: str = "## Summary") -> list[str]:
    """Cells of the first table row starting with ``first_cell`` after the heading ``after``."""
    section = markdown[markdown.index(after) :]
    for line in section.splitlines():
        if line.startswith(f"| {first_cell} |"):
            return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
    raise AssertionError(f"no row {first_cell!r} after {after!r}")


def _header(markdown: str, after: str) -> list[str]:
    """Header cells of the first table after the heading ``after``."""
    section = markdown[markdown.index(after) :]
    line = next(line for line in section.splitlines() if line.startswith("| "))
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_summary_header_says_which_mode_is_accuracy_and_which_is_speed(build: BuildResult) -> None:
    assert _header(render_markdown(build), "## Summary") == [
        "variant", "size MB", "size ratio", "worst output", "gate", "gate mode", "value", "bar",
        "p50 ms (default kernels)", "latency vs FP32", "result",
    ]  # fmt: skip


def test_summary_row_of_failing_variant_uses_its_gate_mode(build: BuildResult) -> None:
    # flips 2.5% against 1% is further from its bar than the AUC drop or the cosine: the worst gate
    assert _row(render_markdown(build), "int8-qdq") == [
        "int8-qdq", "9.80", "0.253", "fc1", "max_decision_flips", REF, "2.50%", "<= 1.00%", "12.00",
        "0.60x", "FAIL",
    ]  # fmt: skip


def test_summary_shows_speed_in_default_mode_with_ratio_to_fp32(build: BuildResult) -> None:
    # int8-qdq runs 28 ms in the reference mode (optimizations off) against FP32's 20 ms in default:
    # the summary must show its default-kernel 12 ms, 0.60x of FP32's default-kernel p50
    rows = {row[0]: row for row in summary_table(build.models[0]).rows}
    assert {name: row[8:10] for name, row in rows.items()} == {
        "fp32": ["20.00", "1.00x"],
        "fp16": ["19.00", "0.95x"],
        "int8-qdq": ["12.00", "0.60x"],
    }
    assert "28.00" not in rows["int8-qdq"] and "30.00" not in rows["fp16"]


def test_summary_speed_is_na_without_a_default_mode(detector: BuildResult) -> None:
    # FP32 and fp16 were measured in the reference mode only: no speed, never the reference latency
    rows = {row[0]: row for row in summary_table(detector.models[0]).rows}
    assert rows["fp16"][8:10] == ["n/a", "n/a"]
    assert rows["int8-qdq"][8:10] == ["4.00", "n/a"]  # its own default p50; no FP32 default p50 to divide by


def test_summary_row_of_passing_variant(build: BuildResult) -> None:
    assert _row(render_markdown(build), "fp16") == [
        "fp16", "19.35", "0.500", "fc1", "min_mean_cosine", REF, "0.99998", ">= 0.99000", "19.00",
        "0.95x", "PASS",
    ]  # fmt: skip


def test_fp32_row_is_marked_baseline_not_gated(build: BuildResult) -> None:
    assert _row(render_markdown(build), "fp32") == [
        "fp32", "38.70", "1.000", "", "", "", "", "", "20.00", "1.00x", "baseline",
    ]  # fmt: skip


def test_embedding_output_table_has_cosines_auc_and_flips(build: BuildResult) -> None:
    md = render_markdown(build)
    after = "#### Output `fc1` (embedding)"
    assert _header(md, after) == ["variant", "mode", "mean cos", "min cos", "p1 cos", "AUC", "flips", "gates"]
    assert _row(md, "int8-qdq", after=after) == [
        "int8-qdq", REF, "0.9780", "0.9580", "0.9680", "0.9830", "2.50%", "FAIL",
    ]  # fmt: skip
    assert _row(md, "fp32", after=after)[-1] == "baseline"


def test_mode_table_shows_both_ort_modes_and_marks_the_gated_one(build: BuildResult) -> None:
    md = render_markdown(build)
    section = md[md.index("### Accuracy in both ORT modes") : md.index("### Speed")]
    assert _header(section, "### Accuracy") == [
        "variant", "ORT mode", "gated", "fc1 mean cos", "fc1 AUC", "fc1 flips",
    ]  # fmt: skip
    rows = [line for line in section.splitlines() if line.startswith("| int8-qdq |")]
    assert [[cell.strip() for cell in r.split("|")[2:7]] for r in rows] == [
        [DEFAULT, "", "0.9150", "0.9500", "8.00%"],
        [REF, "yes", "0.9780", "0.9830", "2.50%"],
    ]
    assert "Mobile gates use the reference mode" in section


def test_speed_table_is_default_mode_only(build: BuildResult) -> None:
    md = render_markdown(build)
    after = "### Speed (default kernels)"
    assert _header(md, after) == [
        "variant", "p50 ms", "p90 ms", "latency vs FP32", "runs", "threads", "graph optimization",
    ]  # fmt: skip
    assert _row(md, "int8-qdq", after=after) == ["int8-qdq", "12.00", "13.20", "0.60x", "50", "1", "all"]
    section = md[md.index(after) : md.index("### Variants and gates")]
    assert "28.00" not in section  # the reference-mode p50 is no app's speed


def test_unmeasurable_tar_renders_na(build: BuildResult) -> None:
    row = _row(render_markdown(build), "fp16", after="### Verification")
    assert row[-2:] == ["0.9050", "n/a"]  # TAR@FAR=1e-3, TAR@FAR=1e-4


def test_failed_gate_detail_shows_value_bar_and_result(build: BuildResult) -> None:
    md = render_markdown(build)
    after = "#### Variant `int8-qdq`"
    assert _header(md, after) == ["output", "gate", "metric", "mode", "value", "bar", "result"]
    row = ["fc1", "min_mean_cosine", "mean cosine vs FP32", REF, "0.9780", ">= 0.9900", "FAIL"]
    assert _row(md, "fc1", after=after) == row
    section = md[md.index(after) :]
    assert f"| fc1 | max_auc_drop | AUC drop vs FP32 | {REF} | 0.0120 | <= 0.0100 | FAIL |" in section
    flips = f"| fc1 | max_decision_flips | decision flips vs FP32 | {REF} | 2.50% | <= 1.00% | FAIL |"
    assert flips in section


def test_variant_details_are_listed_as_literal_code(build: BuildResult) -> None:
    md = render_markdown(build)
    assert "- excluded_nodes: `/stem/Conv, a|b`" in md


def test_pipes_in_table_cells_are_escaped(build: BuildResult) -> None:
    piped = build.model_copy(update={"tool_versions": {"onnx": "1.19|local"}})
    assert "| onnx | `1.19\\|local` |" in render_markdown(piped)


def test_fp32_baseline_section_lists_its_details_without_a_verdict(build: BuildResult) -> None:
    md = render_markdown(build)
    section = md[md.index("#### FP32 baseline `fp32`") : md.index("#### Variant `fp16`")]
    assert "- opset_upgraded: `11 -> 13`" in section
    assert f"- measured in: `{DEFAULT} and {REF}`" in section
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
    assert "<td>int8-qdq</td><td>9.80</td><td>0.253</td><td>fc1</td><td>max_decision_flips</td>" in html
    assert '<td class="fail">FAIL</td>' in html


def test_html_escapes_result_text(build: BuildResult) -> None:
    evil = build.model_copy(update={"notes": ["<script>alert(1)</script>"]})
    html = render_html(evil)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_model_without_pairs_says_so_and_has_no_plot(build: BuildResult) -> None:
    model = build.models[0]

    def unpaired(mode: ModeResult) -> ModeResult:
        outputs = [o.model_copy(update={"verification": None, "decision_flips": None}) for o in mode.outputs]
        return mode.model_copy(update={"outputs": outputs})

    reference = model.reference.model_copy(
        update={"modes": {k: unpaired(m) for k, m in model.reference.modes.items()}}
    )
    evaluation = model.evaluation.model_copy(
        update={"images": 200, "from_images": 200, "from_pairs_only": 0, "pairs": 0, "pairs_file": None}
    )
    no_pairs = build.model_copy(
        update={"models": [model.model_copy(update={"reference": reference, "variants": [],
                                                    "evaluation": evaluation})]}
    )  # fmt: skip
    md = render_markdown(no_pairs)
    verification = md[md.index("### Verification") :]
    assert "No evaluation pairs: verification metrics not measured (no gate judged them)." in verification
    assert "| fp32 |" not in verification.split("### Model details")[0]
    header = ["variant", "mode", "mean cos", "min cos", "p1 cos", "gates"]  # no AUC, no flips
    assert _header(md, "#### Output `fc1` (embedding)") == header
    assert "- pairs: `none (no evaluation pairs)`" in md
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
    model = model.model_copy(update={"variants": [fp16, *model.variants[1:]], "failed": [failure]})
    markdown = render_markdown(build.model_copy(update={"models": [model]}))
    findings = markdown[markdown.index("### Findings") : markdown.index("### Failed variants")]
    assert "- mixed was not built (optional): quantizer crashed" in findings
    assert "- fp16: weight v of bn holds 1e+08" in findings
    assert f"fp16 ran in ORT mode {DEFAULT} at onnxruntime graph optimization level 'extended'" in findings
    assert _row(markdown, "mixed", after="### Failed variants") == [
        "mixed", "optional", "calibrate[face_embedder]", "quantizer crashed"
    ]  # fmt: skip
    assert _row(markdown, "mixed") == [
        "mixed", "", "", "(not built)", "calibrate[face_embedder] failed", "", "", "", "", "",
        "FAILED (optional)",
    ]  # fmt: skip
    assert "- primary output: `fc1`" in markdown
    assert "- outputs: `fc1 float32 [1, 128] (embedding)`" in markdown
    assert "Findings" in render_html(build.model_copy(update={"models": [model]}))


def test_evaluation_facts_count_images_pairs_and_calibration(build: BuildResult) -> None:
    md = render_markdown(build)
    assert "- images measured: `230 (200 from evaluation.images, 30 only from the pairs file)`" in md
    assert "- pairs: `3000 (600 same, 2400 different) from pairs.txt`" in md
    assert "- threshold: `0.363`" in md
    assert "- calibration images: `180`" in md


def test_detector_shows_every_output_with_its_kinds_columns(detector: BuildResult) -> None:
    md = render_markdown(detector)
    assert md.index("#### Output `heatmap` (dense)") < md.index("#### Output `boxes` (generic)")
    heatmap = "#### Output `heatmap` (dense)"
    assert _header(md, heatmap) == [
        "variant", "mode", "SQNR dB", "min SQNR dB", "PSNR dB", "max abs", "rel L2", "mean cos", "mask IoU",
        "gates",
    ]  # fmt: skip
    assert _row(md, "fp16", after=heatmap) == [
        "fp16", REF, "62.50", "56.50", "72.50", "3e-05", "0.02", "0.99999", "1.0000", "PASS",
    ]  # fmt: skip
    boxes = "#### Output `boxes` (generic)"
    assert _header(md, boxes) == ["variant", "mode", "mean cos", "min cos", "SQNR dB", "max abs", "gates"]
    row = ["int8-qdq", REF, "0.9500", "0.9300", "12.00", "0.5", "FAIL"]
    assert _row(md, "int8-qdq", after=boxes) == row
    assert _header(md, "### Accuracy in both ORT modes") == [
        "variant", "ORT mode", "gated", "heatmap SQNR dB", "boxes mean cos",
    ]  # fmt: skip
    assert "- outputs: `heatmap float32 [1, 1, 16, 16] (dense); boxes float32 [1, 4, 16, 16] (generic)`" in md
    assert "AUC" not in md and "flips" not in md


def test_summary_worst_output_is_the_failing_one(detector: BuildResult) -> None:
    summary = summary_table(detector.models[0])
    rows = {row[0]: row for row in summary.rows}
    # the heatmap's gates come first and pass; the boxes' cosine fails and is what the summary shows
    assert rows["int8-qdq"][3:8] == ["boxes", "min_mean_cosine", REF, "0.9500", ">= 0.9900"]
    assert rows["int8-qdq"][-1] == "FAIL"
    # all pass: the one with the least margin (boxes' cosine 0.99999 vs 0.99 beats SQNR 62.5 vs 30)
    assert rows["fp16"][3:8] == ["boxes", "min_mean_cosine", REF, "0.99999", ">= 0.99000"]
    assert _row(render_markdown(detector), "int8-qdq") == ["int8-qdq", *rows["int8-qdq"][1:]]


def test_no_pairs_report_says_verification_was_not_measured(detector: BuildResult) -> None:
    md = render_markdown(detector)
    verification = md[md.index("### Verification") : md.index("### Model details")]
    assert "No evaluation pairs: verification metrics not measured (no gate judged them)." in verification
    assert "|" not in verification
    assert "- pairs: `none (no evaluation pairs)`" in md
    html = render_html(detector)
    assert "verification metrics not measured" in html and "data:image/png" not in html


def test_cli_prints_the_report_summary_table(
    build: BuildResult, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    from packager import cli

    monkeypatch.setattr(cli, "console", Console(width=260, highlight=False))  # no wrapped cells

    failure = VariantFailure(variant="mixed", step="quantize[face_embedder:mixed]", error="x", optional=False)
    failed = build.model_copy(update={"models": [build.models[0].model_copy(update={"failed": [failure]})]})
    cli._print_summary(failed)
    cli._print_gate_table(failed)
    out = capsys.readouterr().out
    assert "worst output" in out and "decision flips vs FP32" in out and "baseline" in out
    failed_line = next(line for line in out.splitlines() if line.startswith("│ mixed"))
    assert "quantize[face_embedder:mixed] failed" in failed_line and "FAILED (required)" in failed_line
    gate_line = next(line for line in out.splitlines() if "max_auc_drop" in line and "int8-qdq" in line)
    assert [c.strip() for c in gate_line.split("│")[1:-1]] == [
        "int8-qdq", "fc1", "max_auc_drop", "AUC drop vs FP32", REF, "0.0120", "<= 0.0100", "FAIL",
    ]  # fmt: skip


def test_classification_output_shows_agreement_and_kl(detector: BuildResult) -> None:
    model = detector.models[0]

    def scores(top1: float, kl: float) -> OutputMetrics:
        return OutputMetrics(name="scores", kind="logits", cosine=_cosine(0.999), sqnr_db=30.0,
                             min_sqnr_db=20.0, psnr_db=40.0, max_abs=0.1, rel_l2=0.01, top1_agreement=top1,
                             top5_agreement=None, kl_divergence=kl)  # fmt: skip

    def with_scores(variant: VariantResult, top1: float, kl: float) -> VariantResult:
        modes = {k: m.model_copy(update={"outputs": [scores(top1, kl)]}) for k, m in variant.modes.items()}
        return variant.model_copy(update={"modes": modes})

    classifier = model.model_copy(
        update={
            "reference": with_scores(model.reference, 1.0, 0.0),
            "variants": [with_scores(model.variants[1], 0.985, 0.0012)],
        }
    )
    [table] = output_tables(classifier)
    assert (table.output, table.kind) == ("scores", "logits")
    header = ["variant", "mode", "top-1 agreement", "top-5 agreement", "KL (nats)", "gates"]
    assert table.table.header == header
    # top-5 of fewer than five classes is not measured: n/a, never a made-up 1.0
    assert table.table.rows[1] == ["int8-qdq", REF, "98.50%", "n/a", "0.0012", "no gates"]
    assert modes_table(classifier).header[3] == "scores top-1 agreement"


def test_report_reads_like_a_model_card_verdict_and_summary_first(build: BuildResult) -> None:
    failure = VariantFailure(variant="mixed", step="quantize[face_embedder:mixed]", error="x", optional=True)
    model = build.models[0].model_copy(update={"failed": [failure]})
    result = build.model_copy(update={"models": [model]})
    md = render_markdown(result)
    order = [
        "**Result: FAIL**", "## Summary", "### Findings", "### Failed variants", "### Outputs",
        "### Variants and gates", "### Verification", "### Model details", "Preprocessing (what the app",
        "Evaluation data:", "## Notes", "## Tool versions", "## Host",
    ]  # fmt: skip
    positions = [md.index(heading) for heading in order]
    assert positions == sorted(positions)
    assert md.index("| int8-qdq | 9.80 |") < md.index("### Findings")  # the summary table itself
    html = render_html(result)
    order = [
        'class="verdict fail"', "<h2>Summary</h2>", "<h3>Findings</h3>", "<h3>Outputs</h3>",
        "<h3>Variants and gates</h3>", "<h3>Verification</h3>", "<h3>Model details</h3>",
        "<h2>Tool versions</h2>", "<h2>Host</h2>",
    ]  # fmt: skip
    positions = [html.index(heading) for heading in order]
    assert positions == sorted(positions)


def test_reference_in_report_text_is_only_the_ort_mode_with_its_explanation(build: BuildResult) -> None:
    md = render_markdown(build)
    explained = re.compile(r"reference( mode)? \(optimizations off; QDQ in float\)")
    for match in re.finditer(r"(?i)\breference\b", md):
        assert explained.match(md, match.start()), md[match.start() - 40 : match.end() + 40]
    assert "FP32 baseline" in md


def _gate_result(name: str, metric: str, value: float | None, bar: float, comparison: str) -> GateResult:
    return _gate("out", name, metric, value, bar, comparison) if value is not None else GateResult(
        output="out", name=name, metric=metric, value=None, bar=bar, comparison=comparison, mode="reference",
        passed=False,
    )  # fmt: skip


def test_sqnr_gate_prints_decibels_with_two_decimals() -> None:
    row = gate_row(_gate_result("min_sqnr_db", "SQNR vs FP32 (dB)", 62.5, 30.0, ">="), "fp16")
    assert row[5:] == ["62.50 dB", ">= 30.00 dB", "PASS"]
    assert row[4] == REF
    # 29.999 dB against 30 must not read "30.00 dB >= 30.00 dB: FAIL"
    failing = _gate_result("min_sqnr_db", "SQNR vs FP32 (dB)", 29.999, 30.0, ">=")
    assert gate_row(failing)[5:7] == ["29.999 dB", ">= 30.000 dB"]
    (message,) = failure_messages("int8-qdq", [failing])
    assert message == (
        "int8-qdq [out]: SQNR vs FP32 (dB) is 29.999 dB, needs >= 30.000 dB "
        "(reference mode: optimizations off; QDQ in float)"
    )


@pytest.mark.parametrize(
    ("name", "value", "bar", "comparison", "expected"),
    [
        ("min_mean_cosine", 0.9780, 0.99, ">=", ["0.9780", ">= 0.9900"]),
        ("min_mean_cosine", 0.98996, 0.99, ">=", ["0.98996", ">= 0.99000"]),  # never "0.9900 >= 0.9900"
        ("min_mean_cosine", 0.99998, 0.99, ">=", ["0.99998", ">= 0.99000"]),  # never "1.0000"
        ("max_auc_drop", 0.012, 0.01, "<=", ["0.0120", "<= 0.0100"]),
        ("max_decision_flips", 0.025, 0.01, "<=", ["2.50%", "<= 1.00%"]),
        ("max_decision_flips", 0.010001, 0.01, "<=", ["1.0001%", "<= 1.0000%"]),
        ("max_decision_flips", 0.00001, 0.01, "<=", ["0.001%", "<= 1.000%"]),  # one flip is not "0.00%"
        ("min_top1_agreement", 0.99999, 0.99, ">=", ["99.999%", ">= 99.000%"]),  # not "100.00%"
        ("max_kl_divergence", 0.0012, 0.01, "<=", ["0.0012 nats", "<= 0.01 nats"]),
        ("min_mask_iou", 0.93, 0.9, ">=", ["0.9300", ">= 0.9000"]),
        ("task:label_match", 0.985, 0.99, ">=", ["0.9850", ">= 0.9900"]),  # a task metric: a score
        ("min_sqnr_db", None, 30.0, ">=", ["n/a", ">= 30.00 dB"]),
    ],
)
def test_gate_values_print_in_their_metrics_unit(
    name: str, value: float | None, bar: float, comparison: str, expected: list[str]
) -> None:
    assert gate_row(_gate_result(name, name, value, bar, comparison))[5:7] == expected


def test_every_gate_has_a_unit() -> None:
    assert sorted(GATE_UNITS) == sorted(g.name for g in GATES)


def test_gates_module_does_not_import_the_report_package() -> None:
    code = (
        "import sys, packager.validate.gates; "
        "print(sorted(m for m in sys.modules if m.startswith('packager.report')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_platform_artifacts_get_one_table_per_platform_and_their_own_sections(build: BuildResult) -> None:
    model = build.models[0]
    int8 = model.variants[1]
    tflite = int8.model_copy(
        update={"file": "android/models/face_embedder/int8.tflite", "platform": "android",
                "runtime": "litert", "format": "tflite", "precision": "int8",
                "modes": {"default": int8.modes["default"]}, "gate_mode": "default", "details": {}}
    )  # fmt: skip
    package = int8.model_copy(
        update={"file": "ios/models/face_embedder/fp16.mlpackage", "variant": "fp16", "platform": "ios",
                "runtime": "coreml", "format": "mlpackage", "precision": "fp16", "modes": {}, "gates": [],
                "passed": True, "details": {}, "not_validated_reason": "Core ML prediction needs macOS"}
    )  # fmt: skip
    with_artifacts = model.model_copy(update={"artifacts": [tflite, package]})
    md = render_markdown(build.model_copy(update={"models": [with_artifacts]}))
    summary = md[: md.index("\n## Model `face_embedder`")]
    assert _header(summary, "#### Platform `android`") == [
        "artifact", "made from", "runtime", "format", "precision", "size MB", "size ratio", "worst output",
        "gate metric", "gate mode", "value", "bar", "p50 ms (default mode)", "result",
    ]  # fmt: skip
    assert _row(summary, "android/models/face_embedder/int8.tflite", after="#### Platform `android`") == [
        "android/models/face_embedder/int8.tflite", "int8-qdq", "litert", "tflite", "int8", "9.80", "0.253",
        "fc1", "decision flips vs FP32", REF, "2.50%", "<= 1.00%", "12.00", "FAIL",
    ]  # fmt: skip
    ios = _row(summary, "ios/models/face_embedder/fp16.mlpackage", after="#### Platform `ios`")
    assert ios[7:9] == ["(not validated)", "Core ML prediction needs macOS"] and ios[-1] == "not validated"
    assert "#### Artifact `ios/models/face_embedder/fp16.mlpackage`: not validated" in md
    assert "Not validated on this host: Core ML prediction needs macOS." in md
    rows = format_gate_table([int8, tflite])  # what the CLI prints: an artifact is named by its file
    assert {row[0] for row in rows} == {"int8-qdq", "android/models/face_embedder/int8.tflite"}
