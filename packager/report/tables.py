"""The metric tables of one model, as strings: summary, gates, outputs by kind, ORT modes, speed,
verification.

Both report templates and the CLI render these, so a cell says the same thing everywhere. Which
columns an output gets is data (:data:`KIND_COLUMNS`, :data:`PRIMARY`): the metrics that mean
something for its kind; how a gate's value and bar print is data too (:data:`GATE_UNITS`). A metric
that was not measured prints ``n/a``; a column whose metric needs data the user did not give (pairs,
a mask threshold) is left out when no row has it.

Accuracy is shown in each variant's gate mode, speed always in the default mode (:data:`SPEED_MODE`):
the reference mode turns graph optimizations off, so its latency is no app's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from packager.report import format as fmt
from packager.results import GateResult, ModelResult, ModeResult, OutputMetrics, VariantResult
from packager.validate.gates import worst_gate

MODE_EXPLANATIONS: dict[str, str] = {
    "default": "this host's optimized kernels",
    "reference": "optimizations off; QDQ in float",
}
"""What each ORT mode is, written wherever the mode is named: "reference" is a mode, never FP32."""
MODE_LABELS: dict[str, str] = {mode: f"{mode} ({why})" for mode, why in MODE_EXPLANATIONS.items()}

SPEED_MODE = "default"
"""The mode whose latency the report shows: ORT's optimized kernels, what an app runs. The reference
mode runs without graph optimizations, so a quantized variant there reads slower than FP32."""

SUMMARY_HEADER: tuple[str, ...] = (
    "variant",
    "size MB",
    "size ratio",
    "worst output",
    "gate",
    "gate mode",
    "value",
    "bar",
    f"p50 ms ({SPEED_MODE} kernels)",
    "latency vs FP32",
    "result",
)
SUMMARY_LEGEND = (
    "accuracy in each variant's gate mode; speed in the default mode (ORT's optimized kernels, what an "
    "app runs), latency vs FP32 below 1.00x is faster"
)
"""One line under the summary where no report text explains it (the CLI)."""
BASELINE = "baseline"
"""The result cell of FP32: the baseline every variant is compared with, never gated."""

GATE_TABLE_HEADER: tuple[str, ...] = ("variant", "output", "gate", "metric", "mode", "value", "bar", "result")

GATE_UNITS: dict[str, fmt.Unit] = {
    "min_mean_cosine": fmt.SCORE,
    "max_auc_drop": fmt.DIFFERENCE,
    "max_decision_flips": fmt.SHARE,
    "min_top1_agreement": fmt.SHARE,
    "min_top5_agreement": fmt.SHARE,
    "max_kl_divergence": fmt.NATS,
    "min_sqnr_db": fmt.DB,
    "min_mask_iou": fmt.SCORE,
}
"""How each gate of ``packager.validate.gates.GATES`` prints its value and bar; a gate not listed
(``task:*`` gates on a task check's own metrics) prints like a score."""


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
TOP1 = Column("top-1 agreement", lambda o: o.top1_agreement, fmt.percent)
TOP5 = Column("top-5 agreement", lambda o: o.top5_agreement, fmt.percent)
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


def mode_label(mode: str) -> str:
    """An ORT mode with what it means, e.g. "reference (optimizations off; QDQ in float)"."""
    return MODE_LABELS.get(mode, mode)


def gate_values(gate: GateResult) -> tuple[str, str]:
    """``(value, bar)`` of a gate in its metric's unit ("62.50 dB", "30.00 dB"), never printed equal
    unless equal (:class:`packager.report.format.Unit`)."""
    return GATE_UNITS.get(gate.name, fmt.SCORE).pair(gate.value, gate.bar)


def gate_row(gate: GateResult, variant: str = "") -> list[str]:
    """One table row (see ``GATE_TABLE_HEADER``)."""
    value, bar = gate_values(gate)
    return [
        variant,
        gate.output,
        gate.name,
        gate.metric,
        mode_label(gate.mode),
        value,
        f"{gate.comparison} {bar}",
        fmt.verdict(gate.passed),
    ]


def format_gate_table(variants: Sequence[VariantResult]) -> list[list[str]]:
    """One row per gate of each variant, as plain strings for the CLI to print.

    Columns are ``GATE_TABLE_HEADER`` (not included, so tables of several models concatenate);
    variants without gates (the FP32 baseline) have no rows. A platform artifact is named by its file.
    """
    return [gate_row(gate, artifact_label(v)) for v in variants for gate in v.gates]


def artifact_label(variant: VariantResult) -> str:
    """A core variant by its name (``int8-qdq``), a platform artifact by its file in the bundle."""
    return variant.variant if variant.platform == "any" else variant.file


def failure_messages(variant: str, gates: Sequence[GateResult]) -> list[str]:
    """One line per failed gate, e.g. for ``GateFailed``: names the variant, output, metric, value and bar."""
    messages = []
    for gate in gates:
        if gate.passed:
            continue
        value, bar = gate_values(gate)
        why = MODE_EXPLANATIONS.get(gate.mode)
        mode = f"{gate.mode} mode: {why}" if why else f"{gate.mode} mode"
        messages.append(
            f"{variant} [{gate.output}]: {gate.metric} is {value}, needs {gate.comparison} {bar} ({mode})"
        )
    return messages


def _columns(kind: str) -> tuple[Column, ...]:
    return KIND_COLUMNS.get(kind, KIND_COLUMNS["generic"])


def _gate_mode(variant: VariantResult) -> ModeResult | None:
    return variant.modes.get(variant.gate_mode)


def _output(mode: ModeResult | None, name: str) -> OutputMetrics | None:
    if mode is None:
        return None
    return next((o for o in mode.outputs if o.name == name), None)


def baseline_mode(model: ModelResult, mode: str) -> ModeResult | None:
    """FP32 in the same mode as the variant, falling back to FP32's own gate mode."""
    ref = model.reference
    return ref.modes[mode] if mode in ref.modes else ref.modes.get(ref.gate_mode)


def all_variants(model: ModelResult) -> list[tuple[VariantResult, bool]]:
    """FP32 first, then the variants in config order; the flag marks FP32."""
    return [(model.reference, True)] + [(variant, False) for variant in model.variants]


def mode_order(modes: dict[str, ModeResult]) -> list[str]:
    known = [mode for mode in MODE_LABELS if mode in modes]
    return known + sorted(mode for mode in modes if mode not in MODE_LABELS)


def latency_ratio(variant: VariantResult, model: ModelResult) -> float | None:
    """The variant's p50 over FP32's, both in :data:`SPEED_MODE`; None when either was not measured.

    FP32 timed in the variant's own step (runs interleaved, ``baseline_latency``) is preferred over
    FP32's own step: two steps run minutes apart under different machine load.
    """
    own = variant.modes.get(SPEED_MODE)
    if own is None:
        return None
    fp32 = own.baseline_latency or (
        model.reference.modes[SPEED_MODE].latency if SPEED_MODE in model.reference.modes else None
    )
    if fp32 is None or fp32.p50_ms <= 0:
        return None
    return own.latency.p50_ms / fp32.p50_ms


def model_outputs(model: ModelResult) -> list[tuple[str, str]]:
    """``(name, kind)`` of every output in model order, as FP32 was measured."""
    ref = _gate_mode(model.reference)
    if ref is not None and ref.outputs:
        return [(o.name, o.kind) for o in ref.outputs]
    return [(io.name, model.output_kinds.get(io.name, "generic")) for io in model.outputs]


def summary_table(model: ModelResult) -> Table:
    """One row per variant (FP32 first, the baseline) and one per failed variant (not built, so not
    in the bundle: the step that failed and whether the variant was optional).

    Accuracy is the worst output in the variant's gate mode: the one whose gate is closest to failing
    (:func:`worst_gate`: a failing gate first), with that gate's metric, value and bar, so one line
    tells why a variant failed or how close it came. Speed is p50 in :data:`SPEED_MODE` and its ratio
    to FP32's there, so quantization never reads as a slowdown the app will not see.
    """
    rows = []
    for variant, is_baseline in all_variants(model):
        worst = worst_gate(variant.gates)
        if worst is not None:
            value, bar = gate_values(worst)
            # The gate's short name, not its description: one line per variant must stay readable
            # in an 80-column CI log (the gate tables below carry the descriptions).
            gate = [worst.output, worst.name, mode_label(worst.mode), value, f"{worst.comparison} {bar}"]
        else:
            gate = ["", "", "", "", ""] if is_baseline else ["(no gates)", "", "", "", ""]
        speed = variant.modes.get(SPEED_MODE)
        rows.append(
            [
                variant.variant,
                fmt.megabytes(variant.size_bytes),
                fmt.ratio(variant.size_ratio),
                *gate,
                fmt.millis(speed.latency.p50_ms if speed else None),
                fmt.times(latency_ratio(variant, model)),
                BASELINE if is_baseline else fmt.verdict(variant.passed),
            ]
        )
    for failure in model.failed:
        state = "optional" if failure.optional else "required"
        rows.append([failure.variant, "", "", "(not built)", f"{failure.step} failed", "", "", "", "", "",
                     f"FAILED ({state})"])  # fmt: skip
    return Table(list(SUMMARY_HEADER), rows)


def _shown(columns: tuple[Column, ...], measured: list[OutputMetrics | None]) -> list[Column]:
    return [
        c
        for c in columns
        if not c.needs_data or any(o is not None and c.value(o) is not None for o in measured)
    ]


def _output_verdict(variant: VariantResult, is_baseline: bool, output: str) -> str:
    if is_baseline:
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
            mode_label(variant.gate_mode),
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
    embedding output with pairs); ``gated`` marks the mode the gates judged. No latency: speed is
    :func:`latency_table`'s, in :data:`SPEED_MODE` only."""
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
    ]
    rows = []
    for variant, is_baseline in all_variants(model):
        for mode in mode_order(variant.modes):
            m = variant.modes[mode]
            cells = []
            for name, column in columns:
                o = _output(m, name)
                cells.append(column.text(column.value(o) if o is not None else None))
            rows.append(
                [
                    variant.variant,
                    mode_label(mode),
                    "" if is_baseline or mode != variant.gate_mode else "yes",
                    *cells,
                ]
            )
    return Table(header, rows)


def latency_table(model: ModelResult) -> Table:
    """Host latency of every variant in :data:`SPEED_MODE` (DESIGN §4: p50/p90 over N runs after
    warm-up, one thread count), its ratio to FP32's p50 and the optimization level it ran at."""
    header = ["variant", "p50 ms", "p90 ms", "latency vs FP32", "runs", "threads", "graph optimization"]
    rows = []
    for variant, _ in all_variants(model):
        m = variant.modes.get(SPEED_MODE)
        if m is None:
            rows.append([variant.variant, fmt.NA, fmt.NA, fmt.NA, fmt.NA, fmt.NA, fmt.NA])
            continue
        rows.append(
            [
                variant.variant,
                fmt.millis(m.latency.p50_ms),
                fmt.millis(m.latency.p90_ms),
                fmt.times(latency_ratio(variant, model)),
                str(m.latency.runs),
                str(m.latency.threads),
                m.optimization_level,
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
    for variant, is_baseline, o in measured:
        v = o.verification if o is not None else None
        ref = _output(baseline_mode(model, variant.gate_mode), name)
        ref_auc = ref.verification.auc if ref is not None and ref.verification is not None else None
        drop = None if v is None or ref_auc is None else ref_auc - v.auc
        rows.append(
            [
                variant.variant,
                mode_label(variant.gate_mode),
                f"{v.positives}/{v.negatives}" if v else fmt.NA,
                fmt.score(v.auc if v else None),
                "" if is_baseline else fmt.DIFFERENCE.text(drop),
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
    pairs = model.evaluation.pairs
    if not pairs:
        return "No evaluation pairs: verification metrics not measured (no gate judged them)."
    if not any(kind == "embedding" for _, kind in model_outputs(model)):
        return (
            f"{pairs} evaluation pairs, but no output is of kind embedding: verification metrics not "
            "measured (no gate judged them)."
        )
    return "No embedding output has verification metrics: not measured (no gate judged them)."
