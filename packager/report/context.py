"""Turn a ``BuildResult`` into the strings both report templates render.

All choices about what a cell says live here and in :mod:`packager.report.tables` (the metric
tables, which the CLI prints too), so report.md, report.html and the terminal cannot disagree and
the templates stay layout only.

Words: "FP32" or "baseline" is the float model every variant is compared with; "reference" is only
ever the ORT mode, written with what it means (``tables.MODE_LABELS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packager.report import format as fmt
from packager.report.platforms import NOT_VALIDATED, PlatformTable, platform_tables
from packager.report.tables import (
    GATE_TABLE_HEADER,
    SPEED_MODE,
    OutputTable,
    Table,
    all_variants,
    artifact_label,
    gate_row,
    latency_table,
    mode_label,
    mode_order,
    modes_table,
    output_tables,
    summary_table,
    verification_note,
    verification_tables,
)
from packager.results import BuildResult, EvaluationFacts, IOInfo, ModelResult, ModeResult, VariantResult

SUMMARY_NOTE = (
    "Accuracy is each variant's worst output in its gate mode, the mode its release gates judge: the "
    "output whose gate is closest to failing (a failing one first), with that gate's metric, value and "
    "bar; every gate is under Variants and gates. Speed is p50 in the default mode, ONNX Runtime's "
    "optimized kernels on this host (what an app runs), and that p50 over FP32's: below 1.00x is faster. "
    "Sizes in MB (10^6 bytes), size ratio to FP32."
)
MODES_NOTE = (
    "Mobile gates use the reference mode (optimizations off; QDQ in float): ONNX Runtime with graph "
    "optimizations disabled, so every QuantizeLinear/DequantizeLinear pair is computed in float, which is "
    "the arithmetic ARM INT8 kernels follow. The default mode runs this host's optimized INT8 kernels; on "
    "x86 CPUs without VNNI their U8S8 path can saturate 16-bit intermediate sums, so accuracy there can be "
    "far below what a phone gets. Default-mode accuracy is shown for information and never gated."
)
SPEED_NOTE = (
    f"Latency in the {SPEED_MODE} mode only, on this host with onnxruntime on CPU, every artifact with "
    "the same thread count: it ranks the variants, it is not a phone's latency. Latency in the reference "
    "mode (optimizations off; QDQ in float) is in results.json: without graph optimizations it measures "
    "no app's speed."
)


@dataclass(frozen=True)
class VariantView:
    """FP32, a variant or a platform artifact: its file facts, every gate and its details."""

    title: str
    """"FP32 baseline", "Variant" or "Artifact"."""
    name: str
    verdict: str | None
    """PASS, FAIL or "not validated"; None for FP32, which is never gated."""
    facts: list[tuple[str, str]]
    gates: Table
    no_gates: str | None
    """Said instead of an empty gates table (never for FP32)."""
    details: list[tuple[str, str]]
    detail_tables: list[tuple[str, Table]] = field(default_factory=list)
    """Details that are lists of records with the same keys (EP coverage per EP...), as tables."""

    @property
    def verdict_class(self) -> str:
        return {"PASS": "pass", "FAIL": "fail"}.get(self.verdict or "", "na")


@dataclass(frozen=True)
class ModelView:
    name: str
    facts: list[tuple[str, str]]
    preprocessing: list[tuple[str, str]]
    evaluation: list[tuple[str, str]]
    summary: Table
    """One row per variant: its worst output against its gate, and its speed (``tables.summary_table``)."""
    outputs: list[OutputTable]
    """Every output, by kind: each variant in its gate mode."""
    modes: Table
    latency: Table
    """Every variant's host latency in the default mode (``tables.latency_table``)."""
    verification: list[OutputTable]
    """Embedding outputs with verification metrics; empty without pairs (see ``verification_note``)."""
    verification_note: str | None
    variants: list[VariantView]
    """FP32, the variants, then the platform artifacts."""
    platforms: list[PlatformTable] = field(default_factory=list)
    """One table per platform target's artifacts (``platforms.platform_tables``)."""
    findings: list[str] = field(default_factory=list)
    """Statements a release engineer must read: failed variants, values a converter clamped, nodes
    kept in float and why, an optimization level the app must use."""
    failures: Table | None = None
    task: Table | None = None
    """The task check's metrics per variant (gate mode), when the model has a task check."""
    task_legend: list[tuple[str, str]] = field(default_factory=list)
    """Each task metric's description, from the check itself."""
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
    summary_note: str = SUMMARY_NOTE
    speed_note: str = SPEED_NOTE
    models: list[ModelView] = field(default_factory=list)


def _variant_view(variant: VariantResult, is_baseline: bool) -> VariantView:
    facts = [
        ("file", variant.file),
        ("sha256", variant.sha256),
        ("size", f"{variant.size_bytes} bytes ({fmt.megabytes(variant.size_bytes)} MB)"),
    ]
    artifact = variant.platform != "any"
    if artifact:
        facts += [
            ("platform", variant.platform),
            ("runtime", f"{variant.runtime} ({variant.format}, {variant.precision or fmt.NA})"),
        ]
    if variant.not_validated_reason is not None:
        facts.append(("not validated", variant.not_validated_reason))
        if variant.validated_on is not None:
            mode = mode_label(variant.gate_mode)
            facts.append(("measured on", f"{variant.validated_on} (gate mode {mode})"))
    elif is_baseline:
        facts.append(("measured in", " and ".join(mode_label(m) for m in mode_order(variant.modes))))
    else:
        facts.append(("gate mode", mode_label(variant.gate_mode)))
    gates = Table(list(GATE_TABLE_HEADER[1:]), [gate_row(gate)[1:] for gate in variant.gates])
    tables = {key: t for key, value in variant.details.items() if (t := _records_table(value)) is not None}
    details = [(key, fmt.detail(value)) for key, value in variant.details.items() if key not in tables]
    if is_baseline:
        return VariantView("FP32 baseline", variant.variant, None, facts, gates, None, details)
    if variant.not_validated_reason is not None and variant.validated_on is None:
        verdict, no_gates = NOT_VALIDATED, f"Not validated on this host: {variant.not_validated_reason}."
    elif variant.not_validated_reason is not None:
        verdict = f"{fmt.verdict(variant.passed)} on {variant.validated_on}; the artifact itself was not run"
        no_gates = "No gates apply."
    else:
        verdict, no_gates = fmt.verdict(variant.passed), "No gates apply."
    title, name = ("Artifact", variant.file) if artifact else ("Variant", variant.variant)
    return VariantView(title, name, verdict, facts, gates, no_gates, details, list(tables.items()))


def _records_table(value: object) -> Table | None:
    """A detail that is a list of flat records with the same keys, as a table (None otherwise)."""
    if not isinstance(value, list) or not value or not all(isinstance(row, dict) for row in value):
        return None
    header = list(value[0])
    if any(list(row) != header for row in value):
        return None
    return Table(header, [[fmt.detail(row[key]) for key in header] for row in value])


def _io(items: list[IOInfo], kinds: dict[str, str] | None = None) -> str:
    def one(io: IOInfo) -> str:
        kind = f" ({kinds[io.name]})" if kinds and io.name in kinds else ""
        return f"{io.name} {io.dtype} [{', '.join(str(d) for d in io.shape)}]{kind}"

    return "; ".join(one(io) for io in items)


def _evaluation(facts: EvaluationFacts) -> list[tuple[str, str]]:
    """What the numbers were measured on, in words."""
    rows = [
        (
            "images measured",
            f"{facts.images} ({facts.from_images} from evaluation.images, "
            f"{facts.from_pairs_only} only from the pairs file)",
        )
    ]
    if facts.pairs:
        rows.append(
            (
                "pairs",
                f"{facts.pairs} ({facts.positives} same, {facts.negatives} different) "
                f"from {facts.pairs_file or 'the pairs file'}",
            )
        )
        rows.append(
            (
                "threshold",
                fmt.detail(facts.threshold)
                if facts.threshold is not None
                else "FP32's best-accuracy threshold",
            )
        )
    else:
        rows.append(("pairs", "none (no evaluation pairs)"))
    if facts.calibration_images is not None:
        rows.append(("calibration images", str(facts.calibration_images)))
    return rows


def _findings(model: ModelResult) -> list[str]:
    found = [
        f"{f.variant} was not built ({'optional' if f.optional else 'required'}): {f.error}"
        for f in model.failed
    ]
    for variant in [v for v, _ in all_variants(model)] + model.artifacts:
        label = artifact_label(variant)
        raw = variant.details.get("findings", [])
        found += [f"{label}: {item}" for item in (raw if isinstance(raw, list) else [raw])]
        for mode in mode_order(variant.modes):
            m = variant.modes[mode]
            if m.optimization_fallback:
                found.append(
                    f"{label} ran in ORT mode {mode_label(mode)} at onnxruntime graph "
                    f"optimization level {m.optimization_level!r}: {m.optimization_fallback}. "
                    "The app must set the same level."
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
        latency=latency_table(model),
        verification=verification,
        verification_note=None if verification else verification_note(model),
        variants=[_variant_view(v, is_baseline) for v, is_baseline in all_variants(model)]
        + [_variant_view(a, False) for a in model.artifacts],
        platforms=platform_tables(model),
        findings=_findings(model),
        failures=_failures(model),
        task=_task_table(model),
        task_legend=_task_legend(model),
    )


def _measured(model: ModelResult) -> list[tuple[str, ModeResult | None]]:
    rows = [(v.variant, v.modes.get(v.gate_mode)) for v, _ in all_variants(model)]
    return rows + [
        (f"{a.platform}:{a.variant} ({a.format} {a.precision})", a.modes.get(a.gate_mode))
        for a in model.artifacts
    ]


def _task_table(model: ModelResult) -> Table | None:
    """Variant x task metric in the gate mode; every metric the check reports, gated or not."""
    measured = _measured(model)
    names: list[str] = []
    for _, mode in measured:
        names += [t.name for t in (mode.task if mode else []) if t.name not in names]
    if not names:
        return None
    rows = []
    for label, mode in measured:
        found = {t.name: t.value for t in (mode.task if mode else [])}
        rows.append([label, *(fmt.number(found.get(n)) for n in names)])
    return Table(["variant", *names], rows)


def _task_legend(model: ModelResult) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for _, mode in _measured(model):
        for t in mode.task if mode else []:
            better = "higher is better" if t.higher_is_better else "lower is better"
            seen.setdefault(t.name, f"{t.description} ({better})")
    return list(seen.items())


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
