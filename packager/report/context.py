"""Turn a ``BuildResult`` into the strings both report templates render.

All choices about what a cell says live here and in :mod:`packager.report.tables` (the metric
tables, which the CLI prints too), so report.md, report.html and the terminal cannot disagree and
the templates stay layout only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packager.report import format as fmt
from packager.report.tables import (
    OutputTable,
    Table,
    all_variants,
    mode_order,
    modes_table,
    output_tables,
    summary_table,
    verification_note,
    verification_tables,
)
from packager.results import BuildResult, IOInfo, ModelResult, VariantResult
from packager.validate.gates import GATE_TABLE_HEADER, gate_row

MODES_NOTE = (
    "Mobile gates use the reference mode: ONNX Runtime with graph optimizations disabled, so every "
    "QuantizeLinear/DequantizeLinear pair is computed in float, which is the arithmetic ARM INT8 kernels "
    "follow. The default mode runs this host's optimized x86 INT8 kernels; on CPUs without VNNI their U8S8 "
    "path can saturate 16-bit intermediate sums, so accuracy there can be far below what a phone gets. "
    "Default-mode numbers are shown for information and never gated. Latency in the reference mode runs "
    "without graph optimizations: compare speed in the default mode."
)


@dataclass(frozen=True)
class VariantView:
    name: str
    is_reference: bool
    passed: bool
    gate_mode: str
    facts: list[tuple[str, str]]
    gates: Table
    details: list[tuple[str, str]]


@dataclass(frozen=True)
class ModelView:
    name: str
    facts: list[tuple[str, str]]
    preprocessing: list[tuple[str, str]]
    evaluation: list[tuple[str, str]]
    summary: Table
    """One row per variant with its worst output against its gate (``tables.summary_table``)."""
    outputs: list[OutputTable]
    """Every output, by kind: each variant in its gate mode."""
    modes: Table
    verification: list[OutputTable]
    """Embedding outputs with verification metrics; empty without pairs (see ``verification_note``)."""
    verification_note: str | None
    variants: list[VariantView]
    findings: list[str] = field(default_factory=list)
    """Statements a release engineer must read: failed variants, values a converter clamped, nodes
    kept in float and why, an optimization level the app must use."""
    failures: Table | None = None
    roc_png: str | None = None
    """A ``data:image/png;base64,...`` URI, filled for the HTML report only."""


@dataclass(frozen=True)
class ReportView:
    project: str
    version: str
    passed: bool
    gates_enforced: bool
    facts: list[tuple[str, str]]
    tool_versions: list[tuple[str, str]]
    host: list[tuple[str, str]]
    notes: list[str]
    modes_note: str
    models: list[ModelView] = field(default_factory=list)


def _variant_view(variant: VariantResult, is_reference: bool) -> VariantView:
    facts = [
        ("file", variant.file),
        ("sha256", variant.sha256),
        ("size", f"{variant.size_bytes} bytes ({fmt.megabytes(variant.size_bytes)} MB)"),
        ("gate mode", variant.gate_mode),
    ]
    gates = Table(list(GATE_TABLE_HEADER[1:]), [gate_row(gate)[1:] for gate in variant.gates])
    details = [(key, fmt.detail(value)) for key, value in variant.details.items()]
    return VariantView(
        variant.variant, is_reference, variant.passed, variant.gate_mode, facts, gates, details
    )


def _io(items: list[IOInfo], kinds: dict[str, str] | None = None) -> str:
    def one(io: IOInfo) -> str:
        kind = f" ({kinds[io.name]})" if kinds and io.name in kinds else ""
        return f"{io.name} {io.dtype} [{', '.join(str(d) for d in io.shape)}]{kind}"

    return "; ".join(one(io) for io in items)


def _count(value: object) -> str:
    return fmt.NA if value is None else str(value)


_EVALUATION_KEYS = (
    "images",
    "from_images",
    "from_pairs_only",
    "pairs",
    "positives",
    "negatives",
    "pairs_file",
    "threshold",
    "calibration_images",
)


def _evaluation(meta: dict[str, object]) -> list[tuple[str, str]]:
    """What the numbers were measured on, in words; keys this code does not know are listed as they are."""
    facts = [
        (
            "images measured",
            f"{_count(meta.get('images'))} ({_count(meta.get('from_images'))} from evaluation.images, "
            f"{_count(meta.get('from_pairs_only'))} only from the pairs file)",
        )
    ]
    pairs = meta.get("pairs")
    if pairs:
        source = meta.get("pairs_file") or "the pairs file"
        facts.append(
            (
                "pairs",
                f"{pairs} ({_count(meta.get('positives'))} same, {_count(meta.get('negatives'))} different) "
                f"from {source}",
            )
        )
        threshold = meta.get("threshold")
        facts.append(
            (
                "threshold",
                fmt.detail(threshold) if threshold is not None else "FP32's best-accuracy threshold",
            )
        )
    else:
        facts.append(("pairs", "none (no evaluation pairs)"))
    if "calibration_images" in meta:
        facts.append(("calibration images", _count(meta["calibration_images"])))
    facts += [(key, fmt.detail(value)) for key, value in meta.items() if key not in _EVALUATION_KEYS]
    return facts


def _findings(model: ModelResult) -> list[str]:
    found = [
        f"{f.variant} was not built ({'optional' if f.optional else 'required'}): {f.error}"
        for f in model.failed
    ]
    for variant, _ in all_variants(model):
        raw = variant.details.get("findings", [])
        found += [f"{variant.variant}: {item}" for item in (raw if isinstance(raw, list) else [raw])]
        for mode in mode_order(variant.modes):
            m = variant.modes[mode]
            if m.optimization_fallback:
                found.append(
                    f"{variant.variant} ({mode} mode) ran at onnxruntime graph optimization level "
                    f"{m.optimization_level!r}: {m.optimization_fallback}. The app must set the same level."
                )
    return found


def _failures(model: ModelResult) -> Table | None:
    if not model.failed:
        return None
    rows = [[f.variant, "optional" if f.optional else "required", f.step, f.error] for f in model.failed]
    return Table(["variant", "required", "failed step", "cause"], rows)


def model_view(model: ModelResult) -> ModelView:
    facts = [
        ("source", model.source),
        ("source sha256", model.source_sha256),
        *[(f"source file {name}", digest) for name, digest in model.source_files.items()],
        ("primary output", model.primary_output or (model.outputs[0].name if model.outputs else "")),
        ("opset", str(model.opset)),
        ("inputs", _io(model.inputs)),
        ("outputs", _io(model.outputs, model.output_kinds)),
    ]
    verification = verification_tables(model)
    return ModelView(
        name=model.name,
        facts=facts,
        preprocessing=[(k, fmt.detail(v)) for k, v in model.preprocessing.items()],
        evaluation=_evaluation(model.evaluation),
        summary=summary_table(model),
        outputs=output_tables(model),
        modes=modes_table(model),
        verification=verification,
        verification_note=None if verification else verification_note(model),
        variants=[_variant_view(v, is_reference) for v, is_reference in all_variants(model)],
        findings=_findings(model),
        failures=_failures(model),
    )


def report_view(result: BuildResult) -> ReportView:
    return ReportView(
        project=result.project,
        version=result.version,
        passed=result.passed,
        gates_enforced=result.gates_enforced,
        facts=[("config sha256", result.config_sha256), ("schema version", str(result.schema_version))],
        tool_versions=sorted(result.tool_versions.items()),
        host=sorted(result.host.items()),
        notes=list(result.notes),
        modes_note=MODES_NOTE,
        models=[model_view(m) for m in result.models],
    )
