"""Mixed precision: static QDQ INT8 with the most sensitive nodes kept in float.

Grows the float set until the variant reaches its own accuracy target (mean cosine to FP32 in the
reference mode) or a limit is hit: the share of float nodes or the size budget. Every set tried is
recorded so the choice can be audited.

Tuning and check. The calibration images come split in two (:mod:`packager.quantize.calibrated`).
Every choice is made on the *tuning* part: which node to add next, by measuring the models. The
search stops at the first set whose mean cosine on the *check* part, images no choice was fitted
to, reaches ``target_mean_cosine + check_margin``. A search that stops on the images it tunes on
stops where their figure first touches the target, a figure biased towards them (SFace stopped at
0.995 on its probe images and measured 0.994 on other real faces). The check figure decides
nothing else: short of the bar, the set kept is the best on the tuning part.
Without check images (fewer calibration images than ``check_every``) the tuning figure stands in,
and the record says so.

Which nodes. Each candidate is measured end to end: the tuning figure of the model with that node
alone in float, minus that of all-INT8 (one QDQ build and one run per candidate). A local score
such as the SQNR drop over a node misranks: on SFace the INT8 loss sits in the early activations,
whose pointwise convolutions show a *negative* SQNR drop (they average noise away) while keeping
one in float gains as much as any node. Candidates are ranked by that gain per byte of cost, where
a node costs its float bytes plus a fixed share of the size budget (:func:`_score`), so a large
weight is taken only for a gain that pays for it; the float set grows along that ranking
(:func:`_schedule`), and every set is built and measured, since gains do not simply add up (two
neighbours often remove the same error). Ranking more finely (a greedy search re-measuring every
gain against the current set) chased differences of 1e-4 on 32 images, took twice the builds and
did no better on new faces (SFace: 0.99556 vs 0.99560 at 10 nodes).

Candidates are the quantizable nodes that influence the scored output (a multi-output model's other
heads are never ranked), less the Relu/Clip nodes the quantizer folds into their producer (they are
scored with it, see :mod:`packager.quantize.sensitivity`); the float share is counted over them.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packager.quantize.calibrated import Calibrated
from packager.quantize.calibration import build_qdq, quantizable_nodes
from packager.quantize.registry import QuantizeContext
from packager.quantize.sensitivity import NodeSensitivity, node_sensitivity
from packager.quantize.static_qdq import calibrated_of
from packager.validate.metrics import cosine_stats
from packager.validate.runners import OrtRunner

if TYPE_CHECKING:  # config imports the recipe registry: no import back at run time
    from packager.config import MixedSpec

log = logging.getLogger(__name__)

SENSITIVITY_PROBES = 8
"""Tuning inputs for the SQNR pass (folded activations, the recorded SQNR drop)."""
MAX_MEASURED = 64
"""At most this many candidates are measured alone (SFace has 30, about 1.3 s each here); beyond
it, the ones highest in SQNR drop."""


@dataclass(frozen=True)
class Candidate:
    """A node that may be kept in float, with the gain of keeping it alone in float."""

    sensitivity: NodeSensitivity
    gain: float
    """Tuning mean cosine with only this node in float, minus that of all-INT8."""

    @property
    def node(self) -> str:
        return self.sensitivity.node

    @property
    def cost(self) -> float:
        """Bytes keeping it in float adds: its weights grow from 1 to 4 bytes a value."""
        return 0.75 * self.sensitivity.float_weight_bytes

    def record(self) -> dict[str, object]:
        s = self.sensitivity
        return {
            "node": s.node,
            "op": s.op_type,
            "gain_alone_on_tuning": round(self.gain, 6),
            "sqnr_loss_db": round(s.loss_db, 2),
        }


@dataclass(frozen=True)
class Trial:
    """One float set tried, and its mean cosine to FP32 on each part."""

    path: Path
    float_nodes: list[Candidate]
    tuning: float
    check: float | None
    """None without check images; the tuning figure then stands in (:meth:`reaches`)."""
    size_ratio: float

    def reaches(self, bar: float) -> bool:
        return (self.tuning if self.check is None else self.check) >= bar

    def describe(self) -> str:
        check = "n/a" if self.check is None else f"{self.check:.5f}"
        return f"mean cosine {self.tuning:.5f} on tuning, {check} on check images, size {self.size_ratio:.3f}"

    def record(self) -> dict[str, object]:
        return {
            "float_nodes": len(self.float_nodes),
            "mean_cosine_tuning": round(self.tuning, 6),
            "mean_cosine_check": None if self.check is None else round(self.check, 6),
            "size_ratio": round(self.size_ratio, 4),
        }


class _Search:
    """Builds and measures models from one calibration; counts the builds."""

    def __init__(self, calibrated: Calibrated, work: Path, reference_bytes: int) -> None:
        self.calibrated, self.work, self.reference_bytes = calibrated, work, reference_bytes
        self.builds = 0
        self._ranges, self._settings = calibrated.ranges(), calibrated.settings()
        self._scored = calibrated.scored_output()
        self._probe, self._expected = calibrated.probe(), calibrated.expected()
        self._check, self._check_expected = calibrated.check(), calibrated.check_expected()

    def build(self, nodes: list[str]) -> Path:
        """The QDQ model with ``nodes`` in float, in a file of its own."""
        self.builds += 1
        path = self.work / f"mixed-{self.builds}.onnx"
        return build_qdq(self.calibrated.preprocessed, self._ranges, self._settings, path, exclude=nodes)

    def tuning(self, path: Path) -> float:
        runner = OrtRunner(path, "reference", output=self._scored)
        return cosine_stats(self._expected, runner.run(self._probe)).mean

    def trial(self, path: Path, float_nodes: list[Candidate]) -> Trial:
        runner = OrtRunner(path, "reference", output=self._scored)
        tuning = cosine_stats(self._expected, runner.run(self._probe)).mean
        check = None
        if len(self._check):
            check = cosine_stats(self._check_expected, runner.run(self._check)).mean
        return Trial(path, float_nodes, tuning, check, path.stat().st_size / self.reference_bytes)


def quantize_mixed(ctx: QuantizeContext) -> dict[str, object]:
    calibrated = calibrated_of(ctx)
    details, limits = calibrated.details(), ctx.spec.mixed
    search = _Search(calibrated, ctx.work_dir, ctx.reference.stat().st_size)
    bar = min(limits.target_mean_cosine + limits.check_margin, 1.0)  # a cosine is at most 1
    pre, scored = calibrated.preprocessed, calibrated.scored_output()

    # Only nodes upstream of the scored output: another head's nodes cannot move its cosine.
    candidates = quantizable_nodes(pre, output=scored)
    int8 = search.trial(calibrated.int8, [])
    probe = calibrated.probe()
    scored_nodes = node_sensitivity(pre, calibrated.int8, probe[:SENSITIVITY_PROBES], candidates)
    # A Relu/Clip the quantizer folded into its producer is no node of its own in INT8: keeping it
    # in float changes nothing, its producer is the candidate (and carries its error).
    sqnr_ranked = [s for s in scored_nodes if s.scored_with is None]
    folded = {s.node: s.scored_with for s in scored_nodes if s.scored_with is not None}
    candidates = [c for c in candidates if c not in folded]
    max_float = int(limits.max_float_share * len(candidates))
    budget = (limits.max_size_ratio - int8.size_ratio) * search.reference_bytes
    trials, ranked, order = [int8], [], []
    stop_reason = "target reached with every node in INT8"
    if not int8.reaches(bar):
        ranked = _rank(search, sqnr_ranked, budget, int8)
        order = _affordable(ranked, budget, max_float)
        trials += _grow(search, order, bar, max_float)
        stop_reason = "target reached" if trials[-1].reaches(bar) else _limits(limits, max_float, candidates)
    # The check part decides only when to stop; short of the bar, keep the best on the tuning part.
    best = trials[-1] if trials[-1].reaches(bar) else max(trials, key=lambda t: t.tuning)
    shutil.copyfile(best.path, ctx.output)
    return {
        "tool": "onnxruntime.quantization (QDQQuantizer) + packager sensitivity search",
        **details,
        "target_mean_cosine": limits.target_mean_cosine,
        "check_margin": limits.check_margin,
        "stopped_on": "check images"
        if details["check_images"]
        else f"tuning images (fewer than {details['check_every']} calibration images: no check part)",
        "reached_mean_cosine_on_tuning": round(best.tuning, 6),
        "reached_mean_cosine_on_check": None if best.check is None else round(best.check, 6),
        # With **details: tuning_images / check_images (the parts), probe_images (tuning ones scored).
        "tuning_images_scored": len(probe),
        "target_reached": best.reaches(bar),
        "stop_reason": stop_reason,
        "findings": []
        if best.reaches(bar)
        else [
            f"target mean cosine {limits.target_mean_cosine} (+{limits.check_margin} on held-out "
            f"calibration images) not reached: best {best.describe()} with {len(best.float_nodes)} "
            f"float node(s); {stop_reason}"
        ],
        "quantizable_nodes": len(candidates),
        "folded_activations": folded,
        "float_nodes": [{**c.record(), "why": "gain per cost on tuning images"} for c in best.float_nodes],
        "float_order": [c.node for c in order],
        "search": [t.record() for t in trials],
        "search_builds": search.builds,
        "top_sensitivity": [c.record() for c in ranked[:10]]
        or [{"node": s.node, "op": s.op_type, "sqnr_loss_db": round(s.loss_db, 2)} for s in sqnr_ranked[:10]],
    }


def _limits(limits: MixedSpec, max_float: int, candidates: list[str]) -> str:
    return (
        f"limits reached: at most {max_float} float nodes ({limits.max_float_share:.0%} of "
        f"{len(candidates)}), size at most {limits.max_size_ratio:.2f} of FP32, or no node left that gains"
    )


def _schedule(count: int) -> list[int]:
    """Float-set sizes to try: one at a time first (the top nodes matter most), then growing steps."""
    sizes, n, step = [], 0, 1
    while n < count:
        n = min(count, n + step)
        sizes.append(n)
        if len(sizes) >= 4:
            step = min(step * 2, 8)
    return sizes


def _rank(search: _Search, sqnr_ranked: list[NodeSensitivity], budget: float, int8: Trial) -> list[Candidate]:
    """Candidates that fit ``budget`` alone, each measured alone in float (one build each), by gain."""
    fitting = [s for s in sqnr_ranked if 0.75 * s.float_weight_bytes <= budget]
    if len(fitting) > MAX_MEASURED:
        log.info("mixed: measuring the %d of %d candidates highest in SQNR drop", MAX_MEASURED, len(fitting))
        fitting = fitting[:MAX_MEASURED]
    measured = []
    for s in fitting:
        path = search.build([s.node])
        measured.append(Candidate(s, search.tuning(path) - int8.tuning))
        path.unlink()  # one model per candidate would fill the disk on a large net
    return sorted(measured, key=lambda c: (-c.gain, c.node))


def _score(candidate: Candidate, overhead: float) -> float:
    """Gain per byte of cost, where a node costs its float bytes plus ``overhead`` (the budget's share
    per allowed float node): nodes cheaper than that rank by gain, dearer ones pay in proportion."""
    return candidate.gain / (candidate.cost + overhead)


def _affordable(ranked: list[Candidate], budget: float, max_float: int) -> list[Candidate]:
    """Nodes that gain, best score first, skipping any whose float weights would break the budget."""
    overhead = max(budget / max(max_float, 1), 1.0)
    picked = []
    for candidate in sorted(ranked, key=lambda c: (-_score(c, overhead), c.node)):
        if candidate.gain > 0 and candidate.cost <= budget:
            picked.append(candidate)
            budget -= candidate.cost
    return picked


def _grow(search: _Search, order: list[Candidate], bar: float, max_float: int) -> list[Trial]:
    """Float sets, the first nodes of ``order`` (sizes by :func:`_schedule`), until one reaches ``bar``."""
    trials = []
    for size in _schedule(min(max_float, len(order))):
        chosen = order[:size]
        trials.append(search.trial(search.build([c.node for c in chosen]), chosen))
        log.info("mixed: %d float nodes -> %s", size, trials[-1].describe())
        if trials[-1].reaches(bar):
            break
    return trials
