"""The whole build: plan -> steps -> results + gates -> bundle and report."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packager.assemble import assemble
from packager.build import BuildOptions, run_plan
from packager.bundle import SourceGenerator, bundle_name, ensure_writable, write_bundle, write_results
from packager.cache import Cache
from packager.config import Config
from packager.errors import GateFailed, VariantsFailed
from packager.manifest import ManifestContent
from packager.plan import make_plan
from packager.report import write_report
from packager.report.tables import failure_messages
from packager.results import BuildResult
from packager.steps import Step, StepFailure, StepResult, StepRunner
from packager.target import SourceContext, installed_targets

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
    on_step: Callable[[Step, StepResult | StepFailure], None] | None = None,
) -> BuildOutcome:
    """Run the plan, apply the gates and write the bundle.

    Raises ``VariantsFailed`` (exit 1) when a required variant could not be built or validated, and
    ``GateFailed`` (exit 3) when a gate is not met; both after every other variant was built and
    measured, with the report of the rejected build written under the cache (never into ``out``).
    """
    out_root = out or config.build.out
    ensure_writable(out_root)
    planned = make_plan(config, options)
    runner = StepRunner(Cache(config.build.cache), progress)
    outcome = run_plan(planned.steps, runner, on_step)
    result, files = assemble(config, options, planned, outcome, runner.hasher)
    step_results = [outcome.results[s.name] for s in planned.steps if s.name in outcome.results]
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
    bundle = write_bundle(out_root, result, files, write_report, _generators(config))
    return BuildOutcome(result, bundle, step_results)


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
    rejected = config.build.cache / "rejected" / bundle_name(result)
    shutil.rmtree(rejected, ignore_errors=True)
    rejected.mkdir(parents=True)
    write_results(result, rejected, write_report)
    return rejected / "report.md"
