"""What bench/android.py and bench/ios.py share: one cold build of the example in a fresh cache with
each step's own time, and the per-artifact table (size, ratio to FP32 ONNX, cosine / AUC drop / flips of
the primary output vs FP32, host p50) and EP coverage lines they print."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packager.build import BuildOptions
from packager.config import load_config
from packager.pipeline import BuildOutcome, build_project
from packager.results import ModelResult, VariantResult
from packager.scheduler import Observer
from packager.steps import Step, StepFailure, StepResult

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "faceid" / "packager.toml"
HEADER = (
    f"{'artifact':<30}{'runtime':<12}{'MB':>8}{'ratio':>7}{'mean cos':>10}{'min cos':>9}"
    f"{'AUC drop':>9}{'flips':>7}{'p50 ms':>8}  gate"
)


@dataclass(frozen=True)
class ColdBuild:
    outcome: BuildOutcome
    seconds: float
    """Wall time of the whole build."""
    steps: dict[str, float]
    """Each step that ran: its own seconds."""

    def seconds_of(self, prefixes: tuple[str, ...]) -> float:
        return sum(t for name, t in self.steps.items() if name.startswith(prefixes))


def cold_build(
    config_path: Path, after: Callable[[BuildOutcome], object] | None = None
) -> tuple[ColdBuild, object]:
    """Build ``config_path`` with gates off into a temporary cache and dist; ``after(outcome)`` runs
    before the temporary folder is deleted (to read the bundle) and its result is returned."""
    config = load_config(config_path)
    timings: dict[str, float] = {}

    def finished(step: Step, outcome: StepResult | StepFailure) -> None:
        if isinstance(outcome, StepResult):
            timings[step.name] = outcome.seconds

    with tempfile.TemporaryDirectory(prefix="packager-bench-") as tmp:
        build = config.build.model_copy(update={"cache": Path(tmp) / "cache", "out": Path(tmp) / "dist"})
        config = config.model_copy(update={"build": build})
        start = time.perf_counter()
        outcome = build_project(
            config, BuildOptions(enforce_gates=False), observer=Observer(finished=finished)
        )
        seconds = time.perf_counter() - start
        extra = after(outcome) if after is not None else None
    return ColdBuild(outcome, seconds, timings), extra


def artifact_row(model: ModelResult, artifact: VariantResult) -> str:
    """One artifact against FP32 on the model's primary output, in the columns of :data:`HEADER`."""
    name = model.primary_output
    short = "/".join(artifact.file.rsplit("/", 2)[-2:])
    mode = artifact.modes.get(artifact.gate_mode)
    if mode is None:
        return f"{short:<30}{artifact.runtime:<12}{artifact.size_bytes / 1e6:>8.2f}  not validated"
    fp32 = model.reference.modes["default"].output(name)
    out = mode.output(name)
    auc = (
        f"{fp32.verification.auc - out.verification.auc:>9.4f}"
        if fp32.verification and out.verification
        else f"{'n/a':>9}"
    )
    flips = f"{out.decision_flips:>7.4f}" if out.decision_flips is not None else f"{'n/a':>7}"
    speed = artifact.modes.get("default") if artifact.validated_on is None else None
    p50 = f"{speed.latency.p50_ms:>8.2f}" if speed else f"{'n/a':>8}"
    notes = "" if artifact.not_shipped_reason is None else "  (not shipped)"
    if artifact.validated_on is not None:
        notes += f"  (measured on {artifact.validated_on})"
    return (
        f"{short:<30}{artifact.runtime:<12}{artifact.size_bytes / 1e6:>8.2f}{artifact.size_ratio:>7.3f}"
        f"{out.cosine.mean:>10.5f}{out.cosine.min:>9.5f}{auc}{flips}{p50}"
        f"  {'pass' if artifact.passed else 'FAIL'}{notes}"
    )


def coverage_lines(model: ModelResult, platform: str) -> list[str]:
    """Each of the platform's .ort files: the EP coverage rows its record carries."""
    lines = []
    for artifact in model.artifacts:
        rows = artifact.details.get("ep_coverage")
        if artifact.platform != platform or artifact.format != "ort" or not isinstance(rows, list):
            continue
        cells = ", ".join(
            f"{r['ep']} {r['supported_nodes']}/{r['total_nodes']} in {r['partitions']} partition(s) "
            f"({r['verdict']})"
            for r in rows
        )
        lines.append(f"  {artifact.file.rsplit('/', 1)[-1]:<22}{cells}")
    return lines


def test_toolchain(module: str) -> tuple[object | None, str]:
    """``(toolchain, "")`` from the tests' ``<module>.toolchain`` (``kotlin``, ``swift``: installed or
    built once per machine), or ``(None, why not)`` when it cannot be had here."""
    import importlib
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    try:
        return importlib.import_module(f"{module}.toolchain").toolchain(), ""
    except BaseException as exc:  # pytest.skip raises an Exception subclass of BaseException
        return None, f"n/a ({exc})"
