"""Command line: the only place that prints, draws progress and maps errors to exit codes.

Exit codes: 0 ok, 1 error, 2 usage or config error, 3 a release gate failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from packager.errors import BuildRejected, ConfigError, DataError, PackagerError, first_line

if TYPE_CHECKING:
    from packager.build import BuildOptions
    from packager.config import Config
    from packager.results import BuildResult
    from packager.scheduler import Observer
    from packager.steps import Step, StepFailure, StepResult

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_GATES = 0, 1, 2, 3


def _console(stderr: bool) -> Console:
    """Wide tables when piped to a CI log (rich would wrap at 80 columns)."""
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, highlight=False, width=None if probe.is_terminal else 140)


console = _console(stderr=False)
err_console = _console(stderr=True)


VERBOSE_HELP = "log every step, show third-party tool warnings and tracebacks on the terminal"
OWN_LOGGERS = ("packager", "device_bench")


class _OwnWarnings(logging.Filter):
    """Without -v the terminal shows packager's warnings and only the errors of other libraries;
    their warnings (one per initializer, per weight...) stay in the build log."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.split(".", 1)[0] in OWN_LOGGERS
        return own or record.levelno >= logging.ERROR


def _configure_logging(verbose: bool) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for handler in [h for h in root.handlers if h.get_name() == "packager-terminal"]:
        root.removeHandler(handler)  # main() may run more than once in a process (tests, bench)
    terminal = logging.StreamHandler(sys.stderr)
    terminal.set_name("packager-terminal")
    terminal.setLevel(logging.INFO if verbose else logging.WARNING)
    terminal.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        terminal.addFilter(_OwnWarnings())
    root.addHandler(terminal)
    # warnings.warn from converters -> the "py.warnings" logger; reinstalled on every call, as
    # whoever replaced warnings.showwarning since (pytest does, per test) would otherwise win.
    logging.captureWarnings(False)
    logging.captureWarnings(True)


class _OwnDebug(logging.Filter):
    """The build log keeps packager's DEBUG records and other libraries' INFO and up (matplotlib
    alone writes ~2000 font-cache DEBUG lines per build)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".", 1)[0] in OWN_LOGGERS or record.levelno >= logging.INFO


@contextmanager
def _build_log(path: Path) -> Iterator[Path]:
    """packager's records from DEBUG and every library's from INFO, into ``path`` for one build."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_OwnDebug())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()


def _quiet_native_logs(verbose: bool) -> None:
    """onnxruntime's C++ logger writes straight to stderr (e.g. one "Removing initializer" warning per
    unused weight, from sessions its own tools create); show only its errors unless -v."""
    import onnxruntime as ort

    ort.set_default_logger_severity(2 if verbose else 3)  # 1 (info) floods with allocator lines
    # TensorFlow (imported later, inside the platform steps) reads this once at import: without -v
    # its C++ lines ("Unable to register cuDNN factory" on a CPU-only host) stay off the terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("packager")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line; ``argv`` (the arguments about to be parsed) lets it skip reading the installed
    targets for their publish options unless they publish. None: every option."""
    parser = argparse.ArgumentParser(
        prog="packager",
        description="Turn a trained ONNX model into validated, release-ready mobile bundles.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage/config error, 3 a release gate failed.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = sub.add_parser(
        "build",
        help="check, quantize, validate and bundle every model in a packager.toml",
        description="Build every model in CONFIG: prepare the FP32 baseline, quantize each variant, "
        "validate every output of it against FP32 on the evaluation images (and pairs, for embeddings), "
        "build what each platform table ([android], [ios]) asks for, apply the release gates and write "
        "dist/<name>-<version>/ with the models, manifest.json, report.md and report.html. "
        "Unchanged steps are taken from the cache (.packager-cache/ next to the config).",
    )
    build.add_argument("config", type=Path, help="path to packager.toml")
    build.add_argument(
        "--out", type=Path, help="output folder (default: [build].out, else dist/ next to the config)"
    )
    build.add_argument(
        "--variants",
        nargs="+",
        metavar="NAME",
        help="build only these variants (overrides the config), e.g. --variants fp16 int8-qdq",
    )
    build.add_argument(
        "--no-gates",
        action="store_true",
        help="write the bundle even if a gate fails; the manifest records it",
    )
    build.add_argument(
        "--jobs",
        "-j",
        type=_positive_int,
        metavar="N",
        help="steps run at once, each in its own process (default: the cores this process may use); "
        "1 runs every step inside the build process",
    )
    build.add_argument(
        "--models",
        nargs="+",
        metavar="NAME",
        help="run only these models' steps, into the cache, and write no bundle (CI matrix jobs that "
        "fill a shared cache for one release build)",
    )
    build.add_argument(
        "--platforms",
        nargs="+",
        metavar="NAME",
        help="run only the core steps and these platform tables' steps (e.g. android), into the cache, "
        "and write no bundle; combines with --models",
    )
    build.add_argument(
        "--cache",
        metavar="PATH_OR_URL",
        help="the step cache, over PACKAGER_CACHE and [build].cache: a folder, or a URL that CI runners "
        "share (s3://bucket/prefix, gs://..., file:///mnt/share); steps then run in [build].local_cache",
    )

    check = sub.add_parser(
        "check", help="inspect an ONNX model: opset, inputs/outputs, ops, the input dims a build fixes"
    )
    check.add_argument("model", type=Path, help="path to an .onnx file")
    check.add_argument("--json", action="store_true", help="print the graph report as JSON (for CI)")
    check.add_argument(
        "--config",
        type=Path,
        metavar="TOML",
        help="a packager.toml: show the exact input dims a build uses and run the model at them once",
    )
    check.add_argument(
        "--model",
        dest="model_name",
        metavar="NAME",
        help="the [[models]] entry of --config (default: the one whose source is MODEL, or the only one)",
    )

    report = sub.add_parser(
        "report",
        help="re-render report.md/report.html of a bundle from its results.json",
        description="Re-render a bundle's reports from its stored results.json, without rerunning anything.",
    )
    report.add_argument("bundle", type=Path, help="a bundle folder, e.g. dist/faceid-1.4.0")

    verify = sub.add_parser(
        "verify",
        help="recompute every checksum of a bundle against its manifest.json (exit 1 on any mismatch)",
        description=(
            "Hash every artifact, source and archive manifest.json lists (a folder such as an .mlpackage by "
            "its files), recompute the manifest's content_sha256, and report missing, changed and unlisted "
            "files. Exit 0 when the bundle matches, 1 otherwise."
        ),
    )
    verify.add_argument("bundle", type=Path, help="a bundle folder, e.g. dist/faceid-1.4.0")

    publish = sub.add_parser(
        "publish",
        help="publish a verified bundle as <name>/<version>/ in a folder or an fsspec URL (s3://...)",
        description=(
            "Verify BUNDLE against its manifest, then publish its platform zips, manifest.json, each "
            "platform's release files (an Android Maven repository, the Swift package zip and its checksum), "
            "an in-toto/SLSA provenance statement and SHA256SUMS as DEST/<name>/<version>/. An existing "
            "version is refused unless --force. Platform options are listed when a target declares them."
        ),
    )
    publish.add_argument("bundle", type=Path, help="a bundle folder, e.g. dist/faceid-1.4.0")
    publish.add_argument(
        "--to",
        required=True,
        metavar="DEST",
        help="a folder, or an fsspec URL: s3://bucket/releases, memory://x",
    )
    publish.add_argument(
        "--force", action="store_true", help="replace an existing (or half-published) version"
    )
    publish.add_argument(
        "--allow-failed-gates",
        action="store_true",
        help="publish a bundle built with --no-gates whose gates failed (the provenance records it)",
    )
    publish.add_argument(
        "--config",
        type=Path,
        metavar="TOML",
        help="the packager.toml the bundle was built from, for the git commit in the provenance (default: "
        "the packager.toml above the bundle whose settings match the manifest's config_sha256)",
    )
    if argv is None or "publish" in argv:  # reading the targets costs ~0.3 s: only when publishing
        _add_target_publish_options(publish)

    sub.add_parser(
        "bench",
        help="benchmark a bundle on phones over adb or on this host (same as `device-bench`)",
        description="Delegates to device-bench; `packager bench run DIST --host`. See `device-bench --help`.",
        add_help=False,
    )

    graph = sub.add_parser("graph", help="print the build's step plan for a config without running it")
    graph.add_argument("config", type=Path, help="path to packager.toml")
    graph.add_argument("--variants", nargs="+", metavar="NAME", help="as for build")

    clean = sub.add_parser("clean", help="delete the step cache (and with --dist, the bundles) of a config")
    clean.add_argument(
        "config", type=Path, nargs="?", default=Path("packager.toml"), help="path to packager.toml"
    )
    clean.add_argument("--dist", action="store_true", help="also delete the output folder")
    clean.add_argument(
        "--older-than",
        metavar="AGE",
        help="remove only the cache entries not used for AGE (a number and s, m, h or d: 7d); a shared "
        "cache URL is never touched",
    )

    cache = sub.add_parser(
        "cache",
        help="show the step cache of a config: location, entries, size, oldest and newest use",
        description="Show the local step cache of CONFIG (PACKAGER_CACHE overrides [build].cache). "
        "--verify re-hashes every file of every entry and removes the corrupt entries; it exits 1 "
        "when it found any (the cache is sound again, but something had corrupted it).",
    )
    cache.add_argument(
        "config", type=Path, nargs="?", default=Path("packager.toml"), help="path to packager.toml"
    )
    cache.add_argument(
        "--verify", action="store_true", help="re-hash every entry, remove the corrupt ones (exit 1 if any)"
    )
    for command in (clean, cache):
        command.add_argument(
            "--cache", metavar="PATH_OR_URL", help="the step cache, as for build (over PACKAGER_CACHE)"
        )

    schema = sub.add_parser(
        "schema",
        help="print the JSON Schema of a file packager writes (for CI): manifest",
        description="Print the JSON Schema of manifest.json, to validate bundles in CI.",
    )
    schema.add_argument("document", choices=["manifest"], help="which file's schema")
    for command in sub.choices.values():
        # Also accepted after the subcommand (`packager build CONFIG -v`); SUPPRESS keeps a -v given
        # before the subcommand from being reset to False by the subparser's default.
        command.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
        )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    """A live display: one line per running step, with progress bars where a step reports some.

    Refreshed by the scheduler's ticks, not by rich's refresh thread: steps run in forked workers,
    and a fork must not copy a thread in the middle of writing to the terminal.
    """
    if not enabled:
        yield None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True, auto_refresh=False) as progress:
        yield progress


class _StepDisplay:
    """The build's terminal output: a live line per running step, and one printed line per finished
    step (cached, ran in N s, FAILED, skipped)."""

    def __init__(self, bar: Progress | None, verbose: bool) -> None:
        self.bar = bar
        self.verbose = verbose
        self.tasks: dict[str, TaskID] = {}
        self.running: dict[str, TaskID] = {}
        self.quieted = False

    def progress(self, label: str, done: int, total: int) -> None:
        if self.bar is None:
            return
        if label not in self.tasks:
            self.tasks[label] = self.bar.add_task(label, total=total)
        self.bar.update(self.tasks[label], completed=done)
        self.bar.refresh()

    def started(self, step: Step) -> None:
        if not self.quieted:  # only a build that runs something pays for importing onnxruntime
            _quiet_native_logs(self.verbose)
            self.quieted = True
        if self.bar is not None:
            self.running[step.name] = self.bar.add_task(escape(step.name), total=None)
            self.bar.refresh()

    def finished(self, step: Step, result: StepResult | StepFailure) -> None:
        from packager.steps import StepFailure

        if self.bar is not None and step.name in self.running:
            self.bar.remove_task(self.running.pop(step.name))
            self.bar.refresh()
        if isinstance(result, StepFailure):
            state = (
                f"[yellow]skipped[/] ({escape(result.root)} failed)"
                if result.skipped
                else f"[red]FAILED[/] {escape(first_line(result.error))}"
            )
        elif result.cached:
            state = "cached"
        else:
            state = f"ran in {result.seconds:.1f}s ({escape(result.reason)})"
        console.print(f"  {escape(step.name):<42} {state}")

    def waiting(self) -> None:
        if self.bar is not None:
            self.bar.refresh()

    def observer(self) -> Observer:
        from packager.scheduler import Observer

        return Observer(started=self.started, finished=self.finished, waiting=self.waiting)


def _cmd_build(args: argparse.Namespace) -> int:
    from packager.build import BuildOptions
    from packager.config import load_config
    from packager.pipeline import build_project
    from packager.results import BuildResult
    from packager.scheduler import default_jobs

    config = _cache_override(load_config(args.config), args.cache)
    options = BuildOptions(
        variants=tuple(args.variants) if args.variants else None, enforce_gates=not args.no_gates
    )
    jobs = args.jobs or default_jobs()
    start = time.perf_counter()
    log_file = args.log_file = config.build.working_cache / "logs" / "build.log"
    with _build_log(log_file), _progress(err_console.is_terminal) as bar:
        display = _StepDisplay(bar, args.verbose)
        if args.models or args.platforms:
            return _build_subset(args, config, options, display, jobs, start)
        try:
            outcome = build_project(
                config,
                options,
                out=args.out,
                progress=display.progress,
                observer=display.observer(),
                jobs=jobs,
            )
        except BuildRejected as exc:
            result = exc.result if isinstance(exc.result, BuildResult) else None
            if result is not None:
                _print_summary(result)
            _print_gate_table(result)
            err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
            err_console.print(f"build log: {log_file}")
            _warn_earlier_bundle(config, args.out)
            return exc.exit_code
        except PackagerError:
            _warn_earlier_bundle(config, args.out)
            raise

    _print_summary(outcome.result)
    _print_artifacts(outcome.result)
    ran = sum(1 for s in outcome.steps if not s.cached)
    console.print(
        f"\n{len(outcome.steps)} steps ({len(outcome.steps) - ran} cached, {ran} ran) in "
        f"{time.perf_counter() - start:.1f}s"
    )
    for model in outcome.result.models:
        for failure in model.failed:
            console.print(
                f"[yellow]optional variant {escape(model.name)}:{escape(failure.variant)} failed and is not "
                f"in the bundle:[/] {escape(failure.error)}",
                soft_wrap=True,
            )
    if not outcome.result.passed and not options.enforce_gates:
        console.print("[yellow]gates failed but --no-gates was given: the manifest records passed=false[/]")
    unchanged = "" if outcome.rewritten else " (unchanged since the last build: left as it was)"
    console.print(f"bundle: {outcome.bundle}{unchanged}")
    return EXIT_OK


def _build_subset(
    args: argparse.Namespace,
    config: Config,
    options: BuildOptions,
    display: _StepDisplay,
    jobs: int,
    start: float,
) -> int:
    """``build --models/--platforms``: run those steps into the cache; no gates, no bundle."""
    from packager.pipeline import run_subset

    partial = run_subset(
        config, options, args.models, args.platforms, display.progress, display.observer(), jobs
    )
    ran = sum(1 for s in partial.steps if not s.cached)
    chosen = ", ".join([*(args.models or ["all models"]), *(args.platforms or ["all platforms"])])
    console.print(
        f"\n{len(partial.steps)} steps of {escape(chosen)} ({len(partial.steps) - ran} cached, {ran} ran) in "
        f"{time.perf_counter() - start:.1f}s; in the cache {config.build.cache}, no bundle written "
        "(a build without --models/--platforms gates and writes it)"
    )
    for failure in partial.outcome.failures.values():
        if not failure.skipped:
            console.print(
                f"[yellow]step {escape(failure.name)} failed:[/] {escape(first_line(failure.error))}",
                soft_wrap=True,
            )
    return EXIT_OK


def _warn_earlier_bundle(config: Config, out: Path | None) -> None:
    """A failed build writes nothing; say so when an earlier bundle of this version is still there,
    so that nobody ships it believing it is this build's."""
    bundle = (out or config.build.out) / f"{config.project.name}-{config.project.version}"
    if (bundle / "manifest.json").is_file():
        err_console.print(
            f"[yellow]note:[/] {bundle} is from an earlier build and was left as it was; "
            "this build wrote nothing",
            soft_wrap=True,
        )


def _print_summary(result: BuildResult) -> None:
    """The report's summary table of each model (``packager.report.tables.summary_table``)."""
    from rich.text import Text

    from packager.report.tables import SUMMARY_LEGEND, summary_table

    for model in result.models:
        summary = summary_table(model)
        table = Table(title=f"{result.project} {result.version} — {model.name}", caption=SUMMARY_LEGEND)
        for col in summary.header:
            table.add_column(col, overflow="fold")
        for row in summary.rows:
            verdict = row[-1]
            style = "green" if verdict == "PASS" else "red" if verdict.startswith("FAIL") else ""
            table.add_row(*(Text(cell) for cell in row[:-1]), Text(verdict, style=style))
        console.print(table)


def _print_artifacts(result: BuildResult) -> None:
    """One line per platform artifact (its verdict, what it was measured on, why it is not shipped),
    then the warnings its target recorded: they belong on the terminal, not only in the report."""
    from packager.report.platforms import NOT_VALIDATED, artifact_verdict

    for model in result.models:
        if model.artifacts:
            console.print(f"\n[bold]platform artifacts[/] — {escape(model.name)}")
        for artifact in model.artifacts:
            verdict = artifact_verdict(artifact)
            style = "yellow" if verdict == NOT_VALIDATED else "green" if artifact.passed else "red"
            if artifact.not_shipped_reason:
                verdict += f"; not shipped: {artifact.not_shipped_reason}"
            console.print(f"  {escape(artifact.file)} [{style}]{escape(verdict)}[/]", soft_wrap=True)
            warnings = artifact.details.get("warnings")
            for warning in warnings if isinstance(warnings, list) else []:
                console.print(f"  [yellow]warning:[/] {escape(str(warning))}", soft_wrap=True)


def _print_gate_table(result: BuildResult | None) -> None:
    """Every gate of every variant, one table per model (columns ``GATE_TABLE_HEADER``)."""
    from rich.text import Text

    from packager.report.tables import GATE_TABLE_HEADER, format_gate_table

    if result is None:
        return
    for model in result.models:
        table = Table(title=f"release gates — {model.name}")
        for col in GATE_TABLE_HEADER:
            table.add_column(col, overflow="fold")
        for row in format_gate_table([*model.variants, *model.artifacts]):
            style = "green" if row[-1] == "PASS" else "red"
            table.add_row(*(Text(cell) for cell in row[:-1]), Text(row[-1], style=style))
        console.print(table)


def _cmd_check(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from packager.config import load_config
    from packager.graph import configured_shape, inspect_model, load_model
    from packager.prepare import fix_image_input

    spec = None
    if args.config is not None:
        config = load_config(args.config)
        if args.model_name:
            entry = config.model(args.model_name)
        else:
            same = [m for m in config.models if m.source.resolve() == args.model.resolve()]
            candidates = same or config.models
            if len(candidates) != 1:
                names = ", ".join(m.name for m in candidates)
                raise ConfigError(args.config, [f"several models ({names}); pick one with --model NAME"])
            entry = candidates[0]
        spec = entry.input
    elif args.model_name:
        raise ConfigError("--model", ["--model NAME needs --config packager.toml"])
    model = load_model(args.model)
    report = inspect_model(model, args.model, spec)
    if spec is not None:
        fix_image_input(model, spec, args.model)  # runs the model at the configured shape, as a build does
    if args.json:
        # InputFix.from_ is spelled "from" for readers of the JSON.
        data = dataclasses.asdict(report, dict_factory=lambda kv: {k.removesuffix("_"): v for k, v in kv})
        print(json.dumps(data, indent=1, default=lambda o: o.model_dump()))
        return EXIT_OK
    console.print(f"[bold]{report.path}[/]  {report.size_bytes / 1e6:.2f} MB")
    console.print(f"IR {report.ir_version}, opset {report.opset}, producer {report.producer or '?'}")
    console.print(
        f"parameters: {report.parameters:,} ({report.parameters_in_initializers:,} in initializers, "
        f"{report.parameters_in_constant_nodes:,} in Constant nodes)"
    )
    io = Table(title="inputs / outputs")
    for col in ("kind", "name", "dtype", "shape"):
        io.add_column(col)
    for kind, items in (("input", report.inputs), ("output", report.outputs)):
        for item in items:
            io.add_row(kind, item.name, item.dtype, str(item.shape))
    console.print(io)
    ops = Table(title="operators")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, count in report.op_histogram.items():
        ops.add_row(op, str(count))
    console.print(ops)
    for note in report.notes:  # the same notes --json gives, worded once in packager.graph
        console.print(f"[yellow]note:[/] {escape(note.message)}; fix: {escape(note.fix)}")
    if report.input_fixes:
        console.print("input dims `packager build` fixes (outputs are re-inferred after):")
        for fix in report.input_fixes:
            console.print(f"  {escape(fix.describe('→'))}: {escape(fix.why)}")
    elif spec is not None:
        console.print(f"input dims: nothing to fix, the model takes {configured_shape(spec)} as configured")
    if spec is None:
        console.print(
            escape(
                "without a config: batch → 1, H,W → [models].input.size (a static H,W the config changes "
                "must run at the new size); pass --config packager.toml [--model NAME] for exact values."
            )
        )
    return EXIT_OK


def _cmd_graph(args: argparse.Namespace) -> int:
    from packager.build import BuildOptions
    from packager.config import load_config
    from packager.plan import make_plan

    config = load_config(args.config)
    planned = make_plan(config, BuildOptions(variants=tuple(args.variants) if args.variants else None))
    table = Table(title=f"build plan for {args.config}")
    for col in ("#", "step", "kind", "depends on", "params"):
        table.add_column(col, overflow="fold", no_wrap=col == "step")
    for i, step in enumerate(planned.steps, start=1):
        files = sum(1 for v in step.inputs.values() if isinstance(v, Path))
        deps = escape(", ".join(step.depends_on())) + (f" +{files} files" if files else "")
        table.add_row(str(i), escape(step.name), step.kind, deps, ", ".join(sorted(step.params)))
    console.print(table)
    console.print("\n[bold]products[/] (artifacts in the bundle)")
    for product in planned.products:
        validation = planned.validations.get(product.name) or f"not validated: {product.not_validated_reason}"
        if product.not_validated_reason is not None and product.proxy is not None:
            validation = f"not run here ({product.not_validated_reason}); measured on {product.proxy_label}"
        console.print(
            f"  {escape(product.bundle_path)}  [{escape(product.platform)}, {escape(product.runtime)}, "
            f"{escape(product.precision)}] made by {escape(product.source.step)}; {escape(validation)}"
            + (f"; one of {escape(product.choice)} (the first that passes ships)" if product.choice else ""),
            soft_wrap=True,
        )
    return EXIT_OK


def _cmd_clean(args: argparse.Namespace) -> int:
    from packager.config import load_config

    config = _cache_override(load_config(args.config), args.cache)
    targets = [config.build.working_cache] + ([config.build.out] if args.dist else [])
    if args.older_than is not None:
        from packager.cache import Cache
        from packager.cache_admin import clean_older_than, parse_age

        age = parse_age(args.older_than)
        cleaned = clean_older_than(Cache(config.build.working_cache), age)
        console.print(
            f"removed {cleaned.removed} cache entries unused for {escape(args.older_than)} "
            f"({cleaned.freed_bytes / 1e6:.1f} MB) from {targets[0]}; kept {cleaned.kept}"
        )
        targets = targets[1:]
    for target in targets:
        if target.exists():
            shutil.rmtree(target)
            console.print(f"removed {target}")
        else:
            console.print(f"nothing at {target}")
    return EXIT_OK


def _cache_override(config: Config, flag: str | None) -> Config:
    """``--cache`` over the ``PACKAGER_CACHE`` variable over ``[build].cache``."""
    from packager.config import with_cache

    value = flag or os.environ.get("PACKAGER_CACHE")
    return with_cache(config, value) if value else config


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    from datetime import datetime

    days = (time.time() - stamp) / 86400
    ago = f"{days:.1f} days ago" if days >= 1 else f"{days * 24:.1f} hours ago"
    return f"{datetime.fromtimestamp(stamp):%Y-%m-%d %H:%M} ({ago})"


def _cmd_cache(args: argparse.Namespace) -> int:
    from packager.cache import open_cache
    from packager.cache_admin import summarize, verify_all
    from packager.config import load_config

    config = _cache_override(load_config(args.config), args.cache)
    cache = open_cache(config.build)
    if args.verify:
        report = verify_all(cache)
        for key, problem in report.removed.items():
            err_console.print(
                f"[yellow]removed corrupt entry[/] {key[:12]}: {escape(problem)}", soft_wrap=True
            )
        found = f"{len(report.removed)} corrupt, removed" if report.removed else "all intact"
        entries = "1 entry" if report.checked == 1 else f"{report.checked} entries"
        console.print(f"verified {entries}: {found}")
    summary = summarize(cache)
    table = Table(title=f"step cache of {args.config}", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("local cache", escape(str(summary.root)))
    table.add_row("shared cache", escape(summary.shared or "none"))
    table.add_row("entries", str(summary.entries))
    table.add_row("size", f"{summary.size_bytes / 1e6:.1f} MB")
    table.add_row("oldest use", _when(summary.oldest_use))
    table.add_row("newest use", _when(summary.newest_use))
    console.print(table)
    # Like fsck: the cache is sound again, but something corrupted it (disk, a tool writing into an
    # entry), and a CI job running this as a health check should see that.
    return EXIT_ERROR if args.verify and report.removed else EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from packager.report import write_report
    from packager.results import BuildResult
    from packager.verify import check_results

    stored = args.bundle / "results.json"
    if not stored.is_file():
        raise DataError(stored, "no results.json here", "pass a bundle folder written by `packager build`")
    check_results(args.bundle)
    try:
        result = BuildResult.model_validate_json(stored.read_text())
    except ValidationError as exc:
        raise DataError(
            stored, f"not a results file of this packager version ({exc.error_count()} errors)", "rebuild"
        ) from None
    for path in write_report(result, args.bundle):
        console.print(f"wrote {path}")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from packager.verify import verify_bundle

    verification = verify_bundle(args.bundle)
    for problem in verification.problems:
        err_console.print(f"[red]mismatch:[/] {escape(problem)}", soft_wrap=True)
    if verification.problems:
        err_console.print(
            f"{args.bundle}: {len(verification.problems)} problem(s) against its manifest; re-copy the "
            "bundle, or `packager clean --dist` and build again (a rebuild alone keeps a bundle whose "
            "changed files kept their size and mtime)"
        )
        return EXIT_ERROR
    console.print(
        f"{args.bundle}: {verification.checked} files and folders match manifest.json, nothing extra"
    )
    return EXIT_OK


TARGET_OPTION = "target_option:"
"""Namespace prefix of a target's publish options: ``target_option:<target>:<flag>``."""


def _add_target_publish_options(publish: argparse.ArgumentParser) -> None:
    """``--<flag>`` for each option an installed target declares for its publish hook."""
    from packager.target import installed_targets

    try:
        targets = installed_targets()
    except ConfigError:
        return  # publishing reports the broken target, with its exit code
    taken = {option for action in publish._actions for option in action.option_strings}
    for name, target in sorted(targets.items()):
        for option in target.publish_options:
            flag = f"--{option.flag}"
            if flag in taken:
                logging.getLogger(__name__).warning(
                    "target %s: publish option %s is taken; ignored", name, flag
                )
                continue
            taken.add(flag)
            dest = f"{TARGET_OPTION}{name}:{option.flag}"
            help_text = f"[{name}] {option.help}"
            if option.metavar is None:
                publish.add_argument(flag, dest=dest, action="store_true", help=help_text)
            else:
                publish.add_argument(flag, dest=dest, metavar=option.metavar, help=help_text)


def _cmd_publish(args: argparse.Namespace) -> int:
    from packager.publish import PublishOptions, publish_bundle

    given: dict[str, dict[str, str | bool]] = {}
    for key, value in vars(args).items():
        if key.startswith(TARGET_OPTION) and value not in (None, False):
            target, flag = key.removeprefix(TARGET_OPTION).split(":", 1)
            given.setdefault(target, {})[flag] = value
    options = PublishOptions(
        force=args.force, allow_failed_gates=args.allow_failed_gates, config=args.config, target_options=given
    )
    done = publish_bundle(args.bundle, args.to, options)
    for f in done.files:
        console.print(f"  {escape(f.path)}  {f.size_bytes:,} B")
    total = sum(f.size_bytes for f in done.files)
    how = "renamed into place" if done.atomic else "uploaded, SHA256SUMS last"
    verb = "replaced" if done.replaced else "published"
    console.print(
        f"{verb} {escape(done.location)}: {len(done.files)} files, {total / 1e6:.2f} MB, {how}, "
        f"in {done.seconds:.1f}s",
        soft_wrap=True,
    )
    if done.config is None:
        console.print(
            "[yellow]note:[/] no packager.toml matching the bundle above it: no git commit in the "
            "provenance (pass --config)"
        )
    elif done.source is None:
        console.print(
            f"[yellow]note:[/] {escape(str(done.config))} is in no git repository with a commit: no git "
            "commit in the provenance",
            soft_wrap=True,
        )
    else:
        state = " (dirty: uncommitted changes)" if done.source.dirty else ""
        console.print(f"source: git {done.source.commit[:12]}{state}, config {escape(done.source.config)}")
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    import json

    from packager.manifest import Manifest

    schemas = {"manifest": Manifest}
    print(json.dumps(schemas[args.document].model_json_schema(), indent=1))
    return EXIT_OK


COMMANDS = {
    "build": _cmd_build,
    "check": _cmd_check,
    "graph": _cmd_graph,
    "clean": _cmd_clean,
    "cache": _cmd_cache,
    "report": _cmd_report,
    "verify": _cmd_verify,
    "publish": _cmd_publish,
    "schema": _cmd_schema,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from device_bench.cli import main as device_bench_main

        return device_bench_main(argv[1:])
    args = _parser(argv).parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # `packager schema manifest | head`: the reader had enough
        sys.stdout = None  # type: ignore[assignment]  # nothing more can be flushed to the closed pipe
        return EXIT_OK
    except PackagerError as exc:
        if args.verbose:
            err_console.print_exception()
        err_console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        if getattr(args, "log_file", None):
            err_console.print(f"build log: {args.log_file}")
        return EXIT_USAGE if isinstance(exc, ConfigError) else exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
