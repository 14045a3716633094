"""The artifacts platform targets made (``ModelResult.artifacts``): one table per platform.

Each row says what the app gets (file, runtime, format, precision, size) and, by the summary's rule,
accuracy in the artifact's gate mode and speed in :data:`~packager.report.tables.SPEED_MODE`. No
latency ratio to FP32: an artifact may run in another runtime than FP32's onnxruntime, and a ratio
across runtimes would say more than this host measured. An artifact this host cannot run says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from packager.report import format as fmt
from packager.report.tables import SPEED_MODE, Table, gate_values, mode_label
from packager.results import ModelResult, VariantResult
from packager.validate.gates import worst_gate

PLATFORM_HEADER: tuple[str, ...] = (
    "artifact",
    "made from",
    "runtime",
    "format",
    "precision",
    "size MB",
    "size ratio",
    "worst output",
    "gate metric",
    "gate mode",
    "value",
    "bar",
    f"p50 ms ({SPEED_MODE} mode)",
    "result",
)
NOT_VALIDATED = "not validated"


@dataclass(frozen=True)
class PlatformTable:
    platform: str
    table: Table


def artifact_verdict(artifact: VariantResult) -> str:
    """PASS/FAIL, ``not validated`` when this host could not run it, or the verdict ``on <stand-in>``
    when a stand-in was measured in its place (report and terminal say it the same way)."""
    if artifact.not_validated_reason is None:
        return fmt.verdict(artifact.passed)
    if artifact.validated_on is None:
        return NOT_VALIDATED
    return f"{fmt.verdict(artifact.passed)} on {artifact.validated_on}"


def _row(artifact: VariantResult) -> list[str]:
    worst = worst_gate(artifact.gates)
    if artifact.not_validated_reason is not None and artifact.validated_on is None:
        gate = ["(not validated)", artifact.not_validated_reason, "", "", ""]
    elif worst is not None:
        value, bar = gate_values(worst)
        gate = [worst.output, worst.metric, mode_label(worst.mode), value, f"{worst.comparison} {bar}"]
    else:
        gate = ["(no gates)", "", "", "", ""]
    # A stand-in's latency is not the artifact's (a TF SavedModel on the host is not Core ML on a phone).
    speed = artifact.modes.get(SPEED_MODE) if artifact.validated_on is None else None
    result = artifact_verdict(artifact)
    if artifact.not_shipped_reason is not None:
        result = f"{result}, not shipped: {artifact.not_shipped_reason}"
    return [
        artifact.file,
        artifact.variant,
        artifact.runtime,
        artifact.format,
        artifact.precision,
        fmt.megabytes(artifact.size_bytes),
        fmt.ratio(artifact.size_ratio),
        *gate,
        fmt.millis(speed.latency.p50_ms if speed else None),
        result,
    ]


def platform_tables(model: ModelResult) -> list[PlatformTable]:
    """One table per platform, platforms and artifacts in the order the build listed them."""
    platforms: dict[str, list[VariantResult]] = {}
    for artifact in model.artifacts:
        platforms.setdefault(artifact.platform, []).append(artifact)
    return [
        PlatformTable(name, Table(list(PLATFORM_HEADER), [_row(a) for a in artifacts]))
        for name, artifacts in platforms.items()
    ]
