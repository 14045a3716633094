"""Step bodies of the Android target. Heavy toolchains (TensorFlow, onnx2tf, LiteRT) are imported
inside them, so loading the target (``packager --help``, ``packager graph``) stays fast."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from packager.config import ModelSpec
from packager.errors import StepError, first_line
from packager.steps import StepContext
from packager.target import ArtifactRecord, ArtifactRecords
from targets.android.config import AndroidSpec

if TYPE_CHECKING:
    from targets.ort_mobile.ep_config import EpCoverage

log = logging.getLogger(__name__)


def ort_style(table: AndroidSpec) -> str:
    """The converter's optimization style for the EPs the loader tries (see
    :func:`targets.ort_mobile.ep_config.recommended_style` for the rule and its source)."""
    from targets.ort_mobile.ep_config import recommended_style

    return recommended_style(table.ort_eps)


ANDROID_EPS = ("NNAPI", "XNNPACK")
"""The EPs an Android app can use, of those the coverage covers (Core ML is iOS's)."""
MIN_XNNPACK_SHARE = 0.5
"""Below this share of nodes on XNNPACK, the loader skips the XNNPACK plan: its recommended setup
gives the ORT pool one thread, so the nodes XNNPACK leaves to the CPU EP would run single-threaded
(ORT's XNNPACK EP page), and a model XNNPACK barely takes runs slower than on the CPU plan."""


def _usable_eps(table: AndroidSpec, coverage: list[EpCoverage]) -> tuple[list[str], list[str]]:
    """The configured EPs the loader should try, and why any was left out (from the coverage)."""
    by_ep = {c.ep: c.as_is for c in coverage}
    xnnpack = by_ep.get("XNNPACK")
    eps, dropped = list(table.ort_eps), []
    if "xnnpack" in eps and xnnpack is not None and xnnpack.share < MIN_XNNPACK_SHARE:
        eps.remove("xnnpack")
        dropped.append(
            f"xnnpack left out: it takes {xnnpack.supported_nodes} of {xnnpack.nodes} nodes "
            f"(< {MIN_XNNPACK_SHARE:.0%}); the rest would run on a 1-thread CPU pool"
        )
    if not eps:
        eps = ["cpu"]
    return eps, dropped


def ort_step(table: AndroidSpec, variant: str, ctx: StepContext) -> dict[str, object]:
    """Input ``model`` (.onnx) -> ``<variant>.ort`` and ``<variant>.required_operators.config``; the
    record carries the converter facts, the EP coverage of the model and the app's session configs.
    An INT8 variant no smaller than input ``fp32_ort`` is rejected
    (:func:`targets.ort_mobile.step.convert_variant`)."""
    from targets.ort_mobile.ep_config import ep_config
    from targets.ort_mobile.ort_format import ANDROID_RUNTIME
    from targets.ort_mobile.step import convert_variant, ort_details

    style = ort_style(table)
    found = convert_variant(variant, style, ctx)
    eps, dropped = _usable_eps(table, found.coverage)
    flags = table.nnapi_flags if "nnapi" in eps else []
    config = ep_config(eps, table.threads, style, nnapi_flags=flags)  # type: ignore[arg-type]
    details = ort_details(found, ANDROID_RUNTIME, ANDROID_EPS) | {
        "session_config": config.model_dump(mode="json"),
        "eps_left_out": dropped,
    }
    record = ArtifactRecord(
        details=details, rejected=found.rejected, nondeterminism=found.conversion.nondeterminism
    )
    return ArtifactRecords(artifacts={f"{variant}.ort": record}).model_dump(mode="json")


def tflite_int8_step(spec: ModelSpec, threads: int, method: str, ctx: StepContext) -> dict[str, object]:
    """Inputs ``model`` (the prepared FP32 .onnx) and ``calibration`` (its preprocessed calibration
    tensors, float32 [N, C, H, W]) -> ``int8.tflite`` by ``method`` (a key of
    :data:`targets.android.tflite_int8.INT8_METHODS`), from its own onnx2tf run (DESIGN pitfall 24); the
    record carries its tensors' quantization parameters and how it was made."""
    from targets.android.tflite_int8 import convert_int8
    from targets.saved_model import tflite_io

    conversion = convert_int8(
        ctx.inputs["model"], ctx.inputs["calibration"], ctx.out, method, threads=threads
    )
    inputs, outputs = tflite_io(conversion.path)
    details: dict[str, object] = {
        "converter": "onnx2tf + TFLite converter",
        "int8_method": conversion.method,
        "io_dtype": conversion.io_dtype,
        "calibration_samples": conversion.calibration_samples,
        "percentile": conversion.percentile,
        "percentile_candidates": conversion.candidates,
        "prelu_rewritten": conversion.prelu_rewritten,
        "equalized_pairs": conversion.equalized_pairs,
        "seconds": round(conversion.seconds, 1),
    }
    log.info("int8.tflite of %s: %s", spec.name, details)
    record = ArtifactRecord(inputs=inputs, outputs=outputs, details=details)
    return ArtifactRecords(artifacts={"int8.tflite": record}).model_dump(mode="json")


def tflite_dynamic_step(ctx: StepContext) -> dict[str, object]:
    """Inputs ``saved_model`` (the shared onnx2tf SavedModel), ``model`` (the FP32 .onnx) and
    ``tensors`` (evaluation tensors, for naming the outputs) -> ``int8-dynamic.tflite``: the TFLite
    converter's dynamic-range quantization (INT8 weights, activations quantized at run time)."""
    import numpy as np
    import tensorflow as tf

    from targets.android.tflite_int8 import _signature_names
    from targets.saved_model import tflite_io

    converter = tf.lite.TFLiteConverter.from_saved_model(str(ctx.inputs["saved_model"]))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        model = converter.convert()
    except Exception as exc:  # the converter raises ConverterError and plain exceptions
        raise StepError(
            "android tflite int8-dynamic",
            f"the TFLite converter failed: {first_line(exc)}",
            "drop int8-dynamic",
        ) from None
    sample = np.load(ctx.inputs["tensors"])[:1]
    path = ctx.out / "int8-dynamic.tflite"
    path.write_bytes(_signature_names(model, ctx.inputs["model"], sample, "NCHW"))
    inputs, outputs = tflite_io(path)
    details: dict[str, object] = {
        "converter": "TFLite converter (dynamic range)",
        "int8_method": "dynamic-range",
    }
    record = ArtifactRecord(inputs=inputs, outputs=outputs, details=details)
    return ArtifactRecords(artifacts={"int8-dynamic.tflite": record}).model_dump(mode="json")


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
                f"int8.tflite fails the XNNPACK check on this host: {message} "
                f"(INT8 p50 {int8.p50_ms:.2f} ms, {ratio:.2f}x FP32)",
                'fix the conversion, or set [android].slower_int8 = "reject" to ship without it',
            )
        rejected = message
    record = ArtifactRecord(details=details, rejected=rejected)
    return ArtifactRecords(artifacts={"int8.tflite": record}).model_dump(mode="json")
