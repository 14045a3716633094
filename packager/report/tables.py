"""The metric tables of one model, as strings: summary, outputs by kind, ORT modes, verification.

Both report templates and the CLI render these, so a cell says the same thing everywhere. Which
columns an output gets is data (:data:`KIND_COLUMNS`, :data:`PRIMARY`): the metrics that mean
something for its kind. A metric that was not measured prints ``n/a``; a column whose metric needs
data the user did not give (pairs, a mask threshold) is left out when no row has it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from packager.report import format as fmt
from packager.results import ModelResult, ModeResult, OutputMetrics, VariantResult
from packager.validate.gates import gate_row, worst_gate

MODE_LABELS: dict[str, str] = {
    "default": "default (x86 kernels)",
    "reference": "reference (optimizations off; QDQ in float)",
}

SUMMARY_HEADER: tuple[str, ...] = (
    "variant",
    "size MB",
    "size ratio",
    "worst output",
    "gate metric",
    "value",
    "bar",
    "p50 ms",
    "result",
)
BASELINE = "baseline"
"""The result cell of FP32: the reference every variant is compared with, never gated."""


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class OutputTable:
    """One output's table; ``kind`` goes in the heading."""

    output: str
    kind: str
    table: Table


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[OutputMetrics], float | None]
    text: Callable[[float | None], str]
    needs_data: bool = False
    """Measured only with data the user may not have given (pairs, a mask threshold): the column is
    shown only when some row has a value."""


def _auc(o: OutputMetrics) -> float | None:
    return o.verification.auc if o.verification is not None else None


MEAN_COS = Column("mean cos", lambda o: o.cosine.mean, fmt.score)
MIN_COS = Column("min cos", lambda o: o.cosine.min, fmt.score)
P1_COS = Column("p1 cos", lambda o: o.cosine.p1, fmt.score)
AUC = Column("AUC", _auc, fmt.score, needs_data=True)
FLIPS = Column("flips", lambda o: o.decision_flips, fmt.percent, needs_data=True)
TOP1 = Column("top-1 agreement", lambda o: o.top1_agreement, fmt.score)
TOP5 = Column("top-5 agreement", lambda o: o.top5_agreement, fmt.score)
KL = Column("KL (nats)", lambda o: o.kl_divergence, fmt.small)
SQNR = Column("SQNR dB", lambda o: o.sqnr_db, fmt.decibels)
MIN_SQNR = Column("min SQNR dB", lambda o: o.min_sqnr_db, fmt.decibels)
PSNR = Column("PSNR dB", lambda o: o.psnr_db, fmt.decibels)
MAX_ABS = Column("max abs", lambda o: o.max_abs, fmt.small)
REL_L2 = Column("rel L2", lambda o: o.rel_l2, fmt.small)
MASK_IOU = Column("mask IoU", lambda o: o.mask_iou, fmt.score, needs_data=True)

KIND_COLUMNS: dict[str, tuple[Column, ...]] = {
    "embedding": (MEAN_COS, MIN_COS, P1_COS, AUC, FLIPS),
    "classification": (TOP1, TOP5, KL),
    "logits": (TOP1, TOP5, KL),
    "dense": (SQNR, MIN_SQNR, PSNR, MAX_ABS, REL_L2, MEAN_COS, MASK_IOU),
    "generic": (MEAN_COS, MIN_COS, SQNR, MAX_ABS),
}
"""The columns of an output's table by kind (a kind not listed is shown like ``generic``)."""

PRIMARY: dict[str, Column] = {
    "embedding": MEAN_COS,
    "classification": TOP1,
    "logits": TOP1,
    "dense": SQNR,
    "generic": MEAN_COS,
}
"""The one number per output in the ORT modes table: what its kind's default gate judges."""


def _columns(kind: str) -> tuple[Column, ...]:
    return KIND_COLUMNS.get(kind, KIND_COLUMNS["generic"])


def _gate_mode(variant: VariantResult) -> ModeResult | None:
    return variant.modes.get(variant.gate_mode)


def _output(mode: ModeResult | None, name: str) -> OutputMetrics | None:
    if mode is None:
        return None
    return next((o for o in mode.outputs if o.name == name), None)


def reference_mode(model: ModelResult, mode: str) -> ModeResult | None:
    """FP32 in the same mode as the variant, falling back to FP32's own gate mode."""
    ref = model.reference
    return ref.modes[mode] if mode in ref.modes else ref.modes.get(ref.gate_mode)


def all_variants(model: ModelResult) -> list[tuple[VariantResult, bool]]:
    """FP32 first, then the variants in config order; the flag marks FP32."""
    return [(model.reference, True)] + [(variant, False) for variant in model.variants]


def mode_order(modes: dict[str, ModeResult]) -> list[str]:
    known = [mode for mode in MODE_LABELS if mode in modes]
    return known + sorted(mode for mode in modes if mode not in MODE_LABELS)


def model_outputs(model: ModelResult) -> list[tuple[str, str]]:
    """``(name, kind)`` of every output in model order, as FP32 was measured."""
    ref = _gate_mode(model.reference)
    if ref is not None and ref.outputs:
        return [(o.name, o.kind) for o in ref.outputs]
    return [(io.name, model.output_kinds.get(io.name, "generic")) for io in model.outputs]


def summary_table(model: ModelResult) -> Table:
    """One row per variant in its gate mode (FP32 first, the baseline) and one per failed variant
    (not built, so not in the bundle: the step that failed and whether the variant was optional).

    The worst output is the one whose gate is closest to failing (:func:`worst_gate`: a failing
    gate first), with that gate's metric, value and bar, so one line tells why a variant failed or
    how close it came.
    """
    rows = []
    for variant, is_reference in all_variants(model):
        m = _gate_mode(variant)
        worst = worst_gate(variant.gates)
        if worst is not None:
            cells = gate_row(worst)
            gate = [worst.output, worst.metric, cells[5], cells[6]]
        else:
            gate = ["", "", "", ""] if is_reference else ["(no gates)", "", "", ""]
        rows.append(
            [
                variant.variant,
                fmt.megabytes(variant.size_bytes),
                fmt.ratio(variant.size_ratio),
                *gate,
                fmt.millis(m.latency.p50_ms if m else None),
                BASELINE if is_reference else fmt.verdict(variant.passed),
            ]
        )
    for failure in model.failed:
        state = "optional" if failure.optional else "required"
        rows.append([failure.variant, "", "", "(not built)", f"{failure.step} failed", "", "", "",
                     f"FAILED ({state})"])  # fmt: skip
    return Table(list(SUMMARY_HEADER), rows)


def _shown(columns: tuple[Column, ...], measured: list[OutputMetrics | None]) -> list[Column]:
    return [
        c
        for c in columns
        if not c.needs_data or any(o is not None and c.value(o) is not None for o in measured)
    ]


def _output_verdict(variant: VariantResult, is_reference: bool, output: str) -> str:
    if is_reference:
        return BASELINE
    gates = [g for g in variant.gates if g.output == output]
    return fmt.verdict(all(g.passed for g in gates)) if gates else "no gates"


def output_table(model: ModelResult, name: str, kind: str) -> OutputTable:
    """Every variant (FP32 first) in its gate mode: the columns of ``kind`` and the output's gates."""
    measured = [(v, is_ref, _output(_gate_mode(v), name)) for v, is_ref in all_variants(model)]
    columns = _shown(_columns(kind), [o for _, _, o in measured])
    rows = [
        [
            variant.variant,
            variant.gate_mode,
            *(c.text(c.value(o) if o is not None else None) for c in columns),
            _output_verdict(variant, is_ref, name),
        ]
        for variant, is_ref, o in measured
    ]
    header = ["variant", "mode", *(c.header for c in columns), "gates"]
    return OutputTable(name, kind, Table(header, rows))


def output_tables(model: ModelResult) -> list[OutputTable]:
    return [output_table(model, name, kind) for name, kind in model_outputs(model)]


def modes_table(model: ModelResult) -> Table:
    """Every variant in every ORT mode: each output's primary metric (plus AUC and flips for an
    embedding output with pairs) and latency; ``gated`` marks the mode the gates judged."""
    outputs = model_outputs(model)
    every_mode = [
        _output(m, name)
        for variant, _ in all_variants(model)
        for m in variant.modes.values()
        for name, _ in outputs
    ]
    columns: list[tuple[str, Column]] = []
    for name, kind in outputs:
        extra = (AUC, FLIPS) if kind == "embedding" else ()
        columns += [(name, c) for c in _shown((PRIMARY.get(kind, MEAN_COS), *extra), every_mode)]
    header = [
        "variant",
        "ORT mode",
        "gated",
        *(f"{name} {c.header}" for name, c in columns),
        "p50 ms",
        "p90 ms",
    ]
    rows = []
    for variant, is_reference in all_variants(model):
        for mode in mode_order(variant.modes):
            m = variant.modes[mode]
            cells = []
            for name, column in columns:
                o = _output(m, name)
                cells.append(column.text(column.value(o) if o is not None else None))
            rows.append(
                [
                    variant.variant,
                    MODE_LABELS.get(mode, mode),
                    "" if is_reference or mode != variant.gate_mode else "yes",
                    *cells,
                    fmt.millis(m.latency.p50_ms),
                    fmt.millis(m.latency.p90_ms),
                ]
            )
    return Table(header, rows)


def verification_table(model: ModelResult, name: str) -> OutputTable | None:
    """Pairs metrics of one embedding output, each variant in its gate mode; None when unmeasured."""
    measured = [(v, is_ref, _output(_gate_mode(v), name)) for v, is_ref in all_variants(model)]
    found = [o.verification for _, _, o in measured if o is not None and o.verification is not None]
    if not found:
        return None
    far_keys: list[str] = []
    for v in found:
        far_keys.extend(k for k in v.tar_at_far if k not in far_keys)
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
    for variant, is_reference, o in measured:
        v = o.verification if o is not None else None
        ref = _output(reference_mode(model, variant.gate_mode), name)
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
    return OutputTable(name, "embedding", Table(header, rows))


def verification_tables(model: ModelResult) -> list[OutputTable]:
    tables = [verification_table(model, name) for name, kind in model_outputs(model) if kind == "embedding"]
    return [t for t in tables if t is not None]


def verification_note(model: ModelResult) -> str:
    """Why a model has no verification table (shown instead of one)."""
    pairs = model.evaluation.get("pairs")
    if not pairs:
        return "No evaluation pairs: verification metrics not measured (no gate judged them)."
    if not any(kind == "embedding" for _, kind in model_outputs(model)):
        return (
            f"{pairs} evaluation pairs, but no output is of kind embedding: verification metrics not "
            "measured (no gate judged them)."
        )
    return "No embedding output has verification metrics: not measured (no gate judged them)."
