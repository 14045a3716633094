"""Mixed precision: static QDQ INT8 with the most sensitive nodes kept in float.

Grows the float set in order of measured sensitivity until the variant reaches its own accuracy
target (mean cosine to FP32 in the reference mode, on probe inputs) or a limit is hit: the share of
float nodes or the size budget. Every step's result is recorded so the choice can be audited.

Candidates are the quantizable nodes that influence the scored output (a multi-output model's other
heads are never ranked), less the Relu/Clip nodes the quantizer folds into their producer (they are
scored with it, see :mod:`packager.quantize.sensitivity`); the float share is counted over them.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from packager.config import ModelSpec
from packager.quantize.calibration import build_qdq, quantizable_nodes
from packager.quantize.registry import QuantizeContext, register
from packager.quantize.sensitivity import NodeSensitivity, node_sensitivity
from packager.quantize.static_qdq import calibrated_of
from packager.validate.metrics import cosine_stats
from packager.validate.runners import OrtRunner

log = logging.getLogger(__name__)

SENSITIVITY_PROBES = 8
"""Inputs used to rank nodes; ranking is stable well before the probe set used for the target."""


def mixed_params(spec: ModelSpec) -> dict[str, object]:
    return {"mixed": spec.mixed.model_dump(mode="json")}


def _schedule(count: int) -> list[int]:
    """Float-set sizes to try: one at a time first (the top nodes matter most), then growing steps."""
    sizes, n, step = [], 0, 1
    while n < count:
        n = min(count, n + step)
        sizes.append(n)
        if len(sizes) >= 4:
            step = min(step * 2, 8)
    return sizes


@register(
    "mixed",
    needs_calibration=True,
    summary="static INT8 (QDQ) with the most sensitive nodes kept in float",
    params=mixed_params,
)
def quantize_mixed(ctx: QuantizeContext) -> dict[str, object]:
    calibrated = calibrated_of(ctx)
    ranges, settings, pre = calibrated.ranges(), calibrated.settings(), calibrated.preprocessed
    probe, expected, details = calibrated.probe(), calibrated.expected(), calibrated.details()
    scored = calibrated.scored_output()
    limits, work = ctx.spec.mixed, ctx.work_dir
    reference_bytes = ctx.reference.stat().st_size

    def evaluate(exclude: list[str], name: str) -> tuple[Path, float, float]:
        path = build_qdq(pre, ranges, settings, work / name, exclude=exclude)
        cosine = cosine_stats(expected, OrtRunner(path, "reference", output=scored).run(probe)).mean
        return path, cosine, path.stat().st_size / reference_bytes

    # Only nodes upstream of the scored output: another head's nodes cannot move its cosine.
    candidates = quantizable_nodes(pre, output=scored)
    ratio = calibrated.int8.stat().st_size / reference_bytes
    scores = details["calibration_candidates"]
    assert isinstance(scores, dict)
    best = (calibrated.int8, float(scores[str(details["calibration"])]), ratio)
    history: list[dict[str, object]] = [{"float_nodes": 0, "mean_cosine": best[1], "size_ratio": ratio}]
    scored_nodes = node_sensitivity(pre, calibrated.int8, probe[:SENSITIVITY_PROBES], candidates)
    # A Relu/Clip the quantizer folded into its producer is no node of its own in INT8: keeping it
    # in float changes nothing, its producer is the candidate (and carries its error).
    ranking = [s for s in scored_nodes if s.scored_with is None]
    folded = {s.node: s.scored_with for s in scored_nodes if s.scored_with is not None}
    candidates = [c for c in candidates if c not in folded]
    chosen: list[NodeSensitivity] = []
    max_float = int(limits.max_float_share * len(candidates))
    affordable = _affordable(ranking, reference_bytes, ratio, limits.max_size_ratio)
    stop_reason = "target reached with every node in INT8"
    if best[1] < limits.target_mean_cosine:
        stop_reason = (
            f"limits reached: at most {max_float} float nodes ({limits.max_float_share:.0%} of "
            f"{len(candidates)}), {len(affordable)} sensitive nodes fit the size budget "
            f"({limits.max_size_ratio:.2f} of FP32)"
        )
        for size in _schedule(min(max_float, len(affordable))):
            trial = affordable[:size]
            path, cos, rat = evaluate([s.node for s in trial], f"mixed-{size}.onnx")
            history.append({"float_nodes": size, "mean_cosine": cos, "size_ratio": rat})
            log.info("mixed: %d float nodes -> mean cosine %.5f, size ratio %.3f", size, cos, rat)
            if cos > best[1]:
                best, chosen = (path, cos, rat), trial
            if cos >= limits.target_mean_cosine:
                stop_reason = "target reached"
                break
    shutil.copyfile(best[0], ctx.output)
    return {
        "tool": "onnxruntime.quantization (QDQQuantizer) + packager sensitivity search",
        **details,
        "target_mean_cosine": limits.target_mean_cosine,
        "reached_mean_cosine_on_probe": round(best[1], 6),
        "probe_images": len(probe),
        "target_reached": best[1] >= limits.target_mean_cosine,
        "stop_reason": stop_reason,
        "findings": []
        if best[1] >= limits.target_mean_cosine
        else [
            f"target mean cosine {limits.target_mean_cosine} not reached: best {best[1]:.5f} on the probe "
            f"images with {len(chosen)} float node(s); {stop_reason}"
        ],
        "quantizable_nodes": len(candidates),
        "folded_activations": folded,
        "float_nodes": [
            {"node": s.node, "op": s.op_type, "sqnr_loss_db": round(s.loss_db, 2), "why": "sensitivity rank"}
            for s in chosen
        ],
        "search": history,
        "top_sensitivity": [
            {"node": s.node, "op": s.op_type, "sqnr_loss_db": round(s.loss_db, 2)} for s in ranking[:10]
        ],
    }


def _affordable(
    ranking: list[NodeSensitivity], reference_bytes: int, int8_ratio: float, max_ratio: float
) -> list[NodeSensitivity]:
    """Sensitive nodes in rank order, skipping any whose float weights would break the size budget."""
    budget = max_ratio * reference_bytes - int8_ratio * reference_bytes
    picked = []
    for node in ranking:
        if node.loss_db <= 0:
            break
        cost = 0.75 * node.float_weight_bytes
        if cost <= budget:
            picked.append(node)
            budget -= cost
    return picked
