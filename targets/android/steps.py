"""Step bodies of the Android target. Heavy toolchains (TensorFlow, onnx2tf, LiteRT) are imported
inside them, so loading the target (``packager --help``, ``packager graph``) stays fast."""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path

from packager.errors import StepError
from packager.steps import StepContext
from packager.target import ArtifactRecord, ArtifactRecords
from targets.android.config import AndroidSpec

log = logging.getLogger(__name__)


def ort_style(table: AndroidSpec) -> str:
    """The converter's optimization style for the EPs the loader tries (see
    :func:`targets.ort_mobile.ep_config.recommended_style` for the rule and its source)."""
    from targets.ort_mobile.ep_config import recommended_style

    return recommended_style(table.ort_eps)


def ort_step(table: AndroidSpec, variant: str, ctx: StepContext) -> dict[str, object]:
    """Input ``model`` (.onnx) -> ``<variant>.ort`` and ``<variant>.required_operators.config``; the
    record carries the converter facts, the EP coverage of the model and the app's session configs."""
    from targets.ort_mobile.ep_config import ep_config, ep_coverage
    from targets.ort_mobile.ort_format import convert_to_ort

    style = ort_style(table)
    with tempfile.TemporaryDirectory(prefix=".ort-", dir=ctx.out) as work:
        conversion = convert_to_ort(ctx.inputs["model"], Path(work), style, "arm")
        os.replace(conversion.ort_path, ctx.out / f"{variant}.ort")
        os.replace(conversion.config_path, ctx.out / f"{variant}.required_operators.config")
    coverage = ep_coverage(ctx.inputs["model"])
    config = ep_config(table.ort_eps, table.threads, style)  # type: ignore[arg-type]
    details: dict[str, object] = {
        "ort_format": {
            "converter_version": conversion.converter_version,
            "ort_format_version": conversion.ort_format_version,
            "optimization_style": conversion.style,
            "target_platform": conversion.target_platform,
            "graph_sha256": conversion.graph_sha256,
            "required_operators": [dataclasses.asdict(ops) for ops in conversion.required_ops],
            "seconds": round(conversion.seconds, 3),
        },
        "ep_coverage": [_coverage_row(c) for c in coverage],
        "session_config": config.model_dump(mode="json"),
    }
    return ArtifactRecords(artifacts={f"{variant}.ort": ArtifactRecord(details=details)}).model_dump(
        mode="json"
    )


def _coverage_row(coverage: object) -> dict[str, object]:
    """One EP's coverage as the manifest and report show it: supported/total nodes, partitions, verdict."""
    row = dataclasses.asdict(coverage)  # type: ignore[call-overload]
    part = row["as_is"]
    return {
        "ep": row["ep"],
        "source": row["source"],
        "supported_nodes": part["supported_nodes"],
        "total_nodes": part["nodes"],
        "partitions": part["partitions"],
        "unsupported_ops": list(part["unsupported_ops"]),
        "verdict": part["verdict"],
        "caveats": list(row["caveats"]),
        "note": row["note"],
    }


def tflite_speed_step(table: AndroidSpec, ctx: StepContext) -> dict[str, object]:
    """Inputs ``int8`` and ``fp32`` (.tflite): XNNPACK partitions of the INT8 file and both files'
    host p50 with the same threads, one run. Rejects (or fails, per ``slower_int8``) an INT8 file that
    is slower than FP32 or splits into more than ``max_partitions`` partitions (DESIGN pitfall 17).

    Raises:
        StepError: with ``slower_int8 = "fail"``, naming both latencies and the partition count.
    """
    from targets.android.tflite import host_latency, xnnpack_delegation

    delegation = xnnpack_delegation(ctx.inputs["int8"], table.threads)
    int8 = host_latency(ctx.inputs["int8"], table.threads)
    fp32 = host_latency(ctx.inputs["fp32"], table.threads)
    ratio = int8.p50_ms / fp32.p50_ms
    problems = []
    if ratio > 1.0:
        problems.append(f"INT8 p50 {int8.p50_ms:.2f} ms is {ratio:.2f}x FP32's {fp32.p50_ms:.2f} ms")
    if delegation.partitions > table.max_partitions:
        outside = ", ".join(f"{op} x{n}" for op, n in sorted(delegation.outside.items()))
        problems.append(
            f"XNNPACK splits it into {delegation.partitions} partitions (max_partitions = "
            f"{table.max_partitions}); ops outside: {outside or 'none'}"
        )
    details: dict[str, object] = {
        "xnnpack": {
            "partitions": delegation.partitions,
            "delegated_ops": delegation.delegated_ops,
            "total_ops": delegation.total_ops,
            "outside": delegation.outside,
            "threads": delegation.threads,
        },
        "host_speed": {
            "int8_p50_ms": round(int8.p50_ms, 3),
            "fp32_p50_ms": round(fp32.p50_ms, 3),
            "ratio": round(ratio, 3),
            "threads": table.threads,
            "delegate": "xnnpack",
        },
    }
    rejected = None
    if problems:
        message = "; ".join(problems)
        if table.slower_int8 == "fail":
            raise StepError(
                "android tflite int8 speed check",
                f"int8.tflite is not faster than float on this host: {message}",
                'fix the conversion, or set [android].slower_int8 = "reject" to ship without it',
            )
        rejected = message
    record = ArtifactRecord(details=details, rejected=rejected)
    return ArtifactRecords(artifacts={"int8.tflite": record}).model_dump(mode="json")
