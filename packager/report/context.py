"""Turn a ``BuildResult`` into tables of strings that both report templates render.

All choices about what a cell says live here, so report.md and report.html cannot disagree and the
templates stay layout only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packager.report import format as fmt
from packager.results import BuildResult, IOInfo, ModelResult, ModeResult, VariantResult
from packager.validate.gates import GATE_TABLE_HEADER, gate_row

TAR_COLUMN_KEY = "1e-3"
"""The FAR shown in the summary table; every FAR measured is in the verification table."""

MODE_LABELS: dict[str, str] = {
    "default": "default (x86 kernels)",
    "reference": "reference (optimizations off; QDQ in float)",
}

MODES_NOTE = (
    "Mobile gates use the reference mode: ONNX Runtime with graph optimizations disabled, so every "
    "QuantizeLinear/DequantizeLinear pair is computed in float, which is the arithmetic ARM INT8 kernels "
    "follow. The default mode runs this host's optimized x86 INT8 kernels; on CPUs without VNNI their U8S8 "
    "path can saturate 16-bit intermediate sums, so accuracy there can be far below what a phone gets. "
    "Default-mode numbers are shown for information and never gated. Latency in the reference mode runs "
    "without graph optimizations: compare speed in the default mode."
)


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


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
    modes: Table
    verification: Table | None
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


def _gate_mode(variant: VariantResult) -> ModeResult | None:
    return variant.modes.get(variant.gate_mode)


def _reference_mode(model: ModelResult, mode: str) -> ModeResult | None:
    """FP32 in the same mode as the variant, falling back to FP32's own gate mode."""
    ref = model.reference
    return ref.modes[mode] if mode in ref.modes else ref.modes.get(ref.gate_mode)


def _all(model: ModelResult) -> list[tuple[VariantResult, bool]]:
    """FP32 first, then the variants in config order; the flag marks FP32."""
    return [(model.reference, True)] + [(variant, False) for variant in model.variants]


def _summary(model: ModelResult) -> Table:
    header = [
        "variant",
        "size MB",
        "size ratio",
        "mean cos",
        "min cos",
        "AUC",
        f"TAR@FAR={TAR_COLUMN_KEY}",
        "flips",
        "p50 ms",
        "gate",
    ]
    rows = []
    for variant, is_reference in _all(model):
        m = _gate_mode(variant)
        v = m.verification if m else None
        rows.append(
            [
                variant.variant,
                fmt.megabytes(variant.size_bytes),
                fmt.ratio(variant.size_ratio),
                fmt.score(m.cosine.mean if m else None),
                fmt.score(m.cosine.min if m else None),
                fmt.score(v.auc if v else None),
                fmt.number(v.tar_at_far.get(TAR_COLUMN_KEY) if v else None),
                fmt.percent(m.decision_flips if m else None),
                fmt.millis(m.latency.p50_ms if m else None),
                "baseline" if is_reference else fmt.verdict(variant.passed),
            ]
        )
    return Table(header, rows)


def _mode_order(modes: dict[str, ModeResult]) -> list[str]:
    known = [mode for mode in MODE_LABELS if mode in modes]
    return known + sorted(mode for mode in modes if mode not in MODE_LABELS)


def _modes(model: ModelResult) -> Table:
    header = [
        "variant",
        "ORT mode",
        "gated",
        "mean cos",
        "min cos",
        "p1 cos",
        "AUC",
        "flips",
        "p50 ms",
        "p90 ms",
    ]
    rows = []
    for variant, is_reference in _all(model):
        for mode in _mode_order(variant.modes):
            m = variant.modes[mode]
            rows.append(
                [
                    variant.variant,
                    MODE_LABELS.get(mode, mode),
                    "" if is_reference or mode != variant.gate_mode else "yes",
                    fmt.score(m.cosine.mean),
                    fmt.score(m.cosine.min),
                    fmt.score(m.cosine.p1),
                    fmt.score(m.verification.auc if m.verification else None),
                    fmt.percent(m.decision_flips),
                    fmt.millis(m.latency.p50_ms),
                    fmt.millis(m.latency.p90_ms),
                ]
            )
    return Table(header, rows)


def _verification(model: ModelResult) -> Table | None:
    measured = [(variant, is_reference, _gate_mode(variant)) for variant, is_reference in _all(model)]
    if all(m is None or m.verification is None for _, _, m in measured):
        return None
    far_keys: list[str] = []
    for _, _, m in measured:
        if m is not None and m.verification is not None:
            far_keys.extend(k for k in m.verification.tar_at_far if k not in far_keys)
    header = [
        "variant",
        "mode",
        "pairs (same/diff)",
        "AUC",
        "AUC drop",
        "accuracy",
        "best threshold",
        *(f"TAR@FAR={key}" for key in far_keys),
    ]
    rows = []
    for variant, is_reference, m in measured:
        v = m.verification if m else None
        ref = _reference_mode(model, variant.gate_mode)
        ref_auc = ref.verification.auc if ref is not None and ref.verification is not None else None
        drop = None if v is None or ref_auc is None else ref_auc - v.auc
        rows.append(
            [
                variant.variant,
                variant.gate_mode,
                f"{v.positives}/{v.negatives}" if v else fmt.NA,
                fmt.score(v.auc if v else None),
                "" if is_reference else fmt.number(drop),
                fmt.number(v.accuracy if v else None),
                fmt.number(v.best_threshold if v else None),
                *(fmt.number(v.tar_at_far.get(key) if v else None) for key in far_keys),
            ]
        )
    return Table(header, rows)


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


def _io(items: list[IOInfo]) -> str:
    return "; ".join(f"{io.name} {io.dtype} [{', '.join(str(d) for d in io.shape)}]" for io in items)


def _findings(model: ModelResult) -> list[str]:
    found = [
        f"{f.variant} was not built ({'optional' if f.optional else 'required'}): {f.error}"
        for f in model.failed
    ]
    for variant, _ in _all(model):
        raw = variant.details.get("findings", [])
        found += [f"{variant.variant}: {item}" for item in (raw if isinstance(raw, list) else [raw])]
        for mode in _mode_order(variant.modes):
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
        ("measured output", model.output or (model.outputs[0].name if model.outputs else "")),
        ("opset", str(model.opset)),
        ("inputs", _io(model.inputs)),
        ("outputs", _io(model.outputs)),
    ]
    return ModelView(
        name=model.name,
        facts=facts,
        preprocessing=[(k, fmt.detail(v)) for k, v in model.preprocessing.items()],
        evaluation=[(k, fmt.detail(v)) for k, v in model.evaluation.items()],
        summary=_summary(model),
        modes=_modes(model),
        verification=_verification(model),
        variants=[_variant_view(v, is_reference) for v, is_reference in _all(model)],
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
