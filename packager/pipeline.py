"""The whole build: plan -> steps -> results + gates -> bundle and report."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packager.assemble import assemble
from packager.build import BuildOptions, plan, run_plan
from packager.bundle import bundle_name, ensure_writable, write_bundle, write_results
from packager.config import Config
from packager.errors import GateFailed
from packager.report import write_report
from packager.results import BuildResult
from packager.steps import Cache, Step, StepResult, StepRunner
from packager.validate.gates import failure_messages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOutcome:
    result: BuildResult
    bundle: Path
    steps: list[StepResult]


def build_project(
    config: Config,
    options: BuildOptions,
    out: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    on_step: Callable[[Step, StepResult], None] | None = None,
) -> BuildOutcome:
    out_root = out or config.build.out
    ensure_writable(out_root)
    steps = plan(config, options)
    runner = StepRunner(Cache(config.build.cache), progress)
    results = run_plan(steps, runner, on_step)
    result, files = assemble(config, options, results, runner.hasher)
    step_results = [results[s.name] for s in steps]
    if options.enforce_gates and not result.passed:
        rejected = config.build.cache / "rejected" / bundle_name(result)
        shutil.rmtree(rejected, ignore_errors=True)
        rejected.mkdir(parents=True)
        write_results(result, rejected, write_report)
        failures = [
            msg for m in result.models for v in m.variants for msg in failure_messages(v.variant, v.gates)
        ]
        raise GateFailed(failures, report=rejected / "report.md", result=result)
    bundle = write_bundle(out_root, result, files, write_report)
    return BuildOutcome(result, bundle, step_results)
