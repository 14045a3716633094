"""The whole build: plan -> steps -> results + gates -> bundle and report."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packager.assemble import assemble
from packager.build import BuildOptions
from packager.bundle import SourceGenerator, bundle_name, ensure_writable, write_bundle, write_results
from packager.bundle_stamp import bundle_stamp
from packager.cache import open_cache
from packager.config import Config
from packager.errors import GateFailed, VariantsFailed
from packager.hashing import Hasher
from packager.manifest import ManifestContent
from packager.plan import Plan, make_plan, subset
from packager.report.tables import failure_messages
from packager.results import BuildResult
from packager.scheduler import Observer, PlanOutcome, run_plan
from packager.steps import StepResult, StepRunner
from packager.target import SourceContext, installed_targets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOutcome:
    result: BuildResult
    bundle: Path
    steps: list[StepResult]
    rewritten: bool = True
    """False when the bundle on disk was already this build's and was left untouched."""


def build_project(
    config: Config,
    options: BuildOptions,
    out: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    observer: Observer | None = None,
    jobs: int = 1,
) -> BuildOutcome:
    """Run the plan (``jobs`` steps at a time, see :mod:`packager.scheduler`), apply the gates and
    write the bundle.

    Raises ``VariantsFailed`` (exit 1) when a required variant could not be built or validated, and
    ``GateFailed`` (exit 3) when a gate is not met; both after every other variant was built and
    measured, with the report of the rejected build written under the cache (never into ``out``).
    """
    out_root = out or config.build.out
    ensure_writable(out_root)
    planned, runner, outcome = _run_steps(config, options, progress, observer, jobs)
    result, files = assemble(config, options, planned, outcome, runner.hasher)
    step_results = _in_plan_order(planned, outcome)
    broken = [f"{m.name}:{f.variant}: {f.error}" for m in result.models for f in m.failed if not f.optional]
    gate_failures = [
        msg for m in result.models for v in m.variants for msg in failure_messages(v.variant, v.gates)
    ] + [
        msg
        for m in result.models
        for a in m.artifacts
        if a.not_shipped_reason is None
        for msg in failure_messages(a.file, a.gates)
    ]
    if broken or (options.enforce_gates and gate_failures):
        report = _write_rejected(config, result)
        if broken:
            # --no-gates waives the gates: then only the variants that could not be built are listed.
            listed = broken + (gate_failures if options.enforce_gates else [])
            raise VariantsFailed(listed, report=report, result=result)
        raise GateFailed(gate_failures, report=report, result=result)
    stamp = bundle_stamp(config, options.given(), result, files, out_root / bundle_name(result))
    if stamp.unchanged():
        log.info("%s is already this build's bundle: left as it is", stamp.folder)
        return BuildOutcome(result, stamp.folder, step_results, rewritten=False)
    bundle = write_bundle(out_root, result, files, _write_report, _generators(config))
    stamp.save()
    return BuildOutcome(result, bundle, step_results)


def _write_report(result: BuildResult, folder: Path) -> list[Path]:
    from packager.report import write_report  # matplotlib and jinja2: only when a report is written

    return write_report(result, folder)


@dataclass(frozen=True)
class PartialOutcome:
    steps: list[StepResult]
    outcome: PlanOutcome


def run_subset(
    config: Config,
    options: BuildOptions,
    models: list[str] | None,
    platforms: list[str] | None,
    progress: Callable[[str, int, int], None] | None = None,
    observer: Observer | None = None,
    jobs: int = 1,
) -> PartialOutcome:
    """Run only the steps of some models and platforms, into the cache, and write no bundle.

    For CI matrices: one job per model x platform fills a shared cache, and one release build then
    finds every step cached. The steps are the very steps (same keys) the full build plans, since
    a model's steps and a platform's steps depend on nothing outside them; gates are not applied and
    nothing is written to ``out`` (a bundle of a subset would look like a release and not be one).

    Raises:
        ConfigError: a model or platform that the config does not have.
    """
    planned, _, outcome = _run_steps(subset(config, models, platforms), options, progress, observer, jobs)
    return PartialOutcome(_in_plan_order(planned, outcome), outcome)


def _run_steps(
    config: Config,
    options: BuildOptions,
    progress: Callable[[str, int, int], None] | None,
    observer: Observer | None,
    jobs: int,
) -> tuple[Plan, StepRunner, PlanOutcome]:
    """Plan ``config`` and run its steps against its cache."""
    cache = open_cache(config.build)
    hasher = Hasher(memo=cache.memo_file)  # input digests and plan facts kept across builds: fast no-ops
    planned = make_plan(config, options, hasher)
    runner = StepRunner(cache, progress, hasher)
    return planned, runner, run_plan(planned.steps, runner, observer, jobs)


def _in_plan_order(planned: Plan, outcome: PlanOutcome) -> list[StepResult]:
    """The results of the steps that ran or were cached, in plan order (failed ones have none)."""
    return [outcome.results[s.name] for s in planned.steps if s.name in outcome.results]


def _generators(config: Config) -> list[SourceGenerator]:
    """The code generators of the configured targets that have one."""
    if not config.targets:
        return []
    installed = installed_targets()
    found: list[SourceGenerator] = []
    for name, table in config.targets.items():
        target = installed[name]
        if target.generate is None:
            continue
        generate, parsed = target.generate, target.schema.model_validate(table)

        def run(content: ManifestContent, root: Path, generate=generate, parsed=parsed) -> list[Path]:
            return generate(SourceContext(config, parsed, content, root))

        found.append((name, run))
    return found


def _write_rejected(config: Config, result: BuildResult) -> Path:
    """results.json and the reports of a build that will not ship, kept in the cache for reading."""
    rejected = config.build.working_cache / "rejected" / bundle_name(result)
    shutil.rmtree(rejected, ignore_errors=True)
    rejected.mkdir(parents=True)
    write_results(result, rejected, _write_report)
    return rejected / "report.md"
