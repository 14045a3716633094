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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from packager.errors import BuildRejected, ConfigError, PackagerError, first_line

if TYPE_CHECKING:
    from packager.config import Config
    from packager.results import BuildResult
    from packager.steps import Step, StepResult

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="packager",
        description="Turn a trained ONNX model into validated, release-ready mobile bundles.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage/config error, 3 a release gate failed.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
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


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        yield progress


def _cmd_build(args: argparse.Namespace) -> int:
    from packager.build import BuildOptions
    from packager.config import load_config
    from packager.pipeline import build_project
    from packager.results import BuildResult
    from packager.steps import StepFailure

    config = load_config(args.config)
    options = BuildOptions(
        variants=tuple(args.variants) if args.variants else None, enforce_gates=not args.no_gates
    )
    start = time.perf_counter()
    tasks: dict[str, int] = {}
    _quiet_native_logs(args.verbose)
    log_file = args.log_file = config.build.cache / "logs" / "build.log"
    with _build_log(log_file), _progress(err_console.is_terminal) as bar:

        def progress(label: str, done: int, total: int) -> None:
            if bar is None:
                return
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done)

        def on_step(step: Step, result: StepResult | StepFailure) -> None:
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

        try:
            outcome = build_project(config, options, out=args.out, progress=progress, on_step=on_step)
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
    console.print(f"bundle: {outcome.bundle}")
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

    config = load_config(args.config)
    targets = [config.build.cache] + ([config.build.out] if args.dist else [])
    for target in targets:
        if target.exists():
            shutil.rmtree(target)
            console.print(f"removed {target}")
        else:
            console.print(f"nothing at {target}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from packager.errors import DataError
    from packager.report import write_report
    from packager.results import BuildResult

    stored = args.bundle / "results.json"
    if not stored.is_file():
        raise DataError(stored, "no results.json here", "pass a bundle folder written by `packager build`")
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
            f"{args.bundle}: {len(verification.problems)} problem(s) against its manifest; rebuild or "
            "re-copy the bundle"
        )
        return EXIT_ERROR
    console.print(
        f"{args.bundle}: {verification.checked} files and folders match manifest.json, nothing extra"
    )
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
    "report": _cmd_report,
    "verify": _cmd_verify,
    "schema": _cmd_schema,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from device_bench.cli import main as device_bench_main

        return device_bench_main(argv[1:])
    args = _parser().parse_args(argv)
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
