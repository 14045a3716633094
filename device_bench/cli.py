"""``device-bench``: the only module that prints, parses arguments or picks exit codes.

Exit codes: 0 ok; 1 error, failed/missing cells, or a regression found by ``compare``; 2 usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from device_bench import __version__, device_info, table
from device_bench.adb import Adb, AdbConfig, find_adb
from device_bench.bundle import select_artifacts
from device_bench.compare import compare, parse_threshold
from device_bench.errors import DeviceBenchError, UsageError
from device_bench.host import HOST_ENGINES, run_host
from device_bench.results import BenchSettings, RunResult, load, save
from device_bench.runners import DeviceRunConfig, new_run_id, run_devices
from device_bench.tools import PROVIDERS, TOOLS

EPILOG = """examples:
  device-bench devices
  device-bench run dist/faceid-1.4.0/android --serial R58M123 \\
      --tflite-benchmark ./bin/arm64/benchmark_model --ort-perf-test ./bin/arm64/onnxruntime_perf_test \\
      --threads 4 --runs 50 --warmup 10 --providers cpu,xnnpack,nnapi --out results/
  device-bench run dist/faceid-1.4.0/android --host
  device-bench compare results/baseline.json results/new.json --max-regression 10%
  device-bench parse --tool tflite captured_output.txt
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="device-bench",
        description="Benchmark packager bundles on Android phones over adb, and on this host.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"device-bench {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every adb call; tracebacks on errors"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    adb_opts = argparse.ArgumentParser(add_help=False)
    group = adb_opts.add_argument_group("adb")
    group.add_argument(
        "--adb", help="adb executable (default: $ADB, PATH, then the one in the adbutils wheel)"
    )
    group.add_argument("--adb-port", type=int, help="adb server port (default: adb's, 5037)")
    group.add_argument("--timeout", type=float, default=60.0, help="seconds for each adb call (default 60)")

    devices = sub.add_parser(
        "devices", parents=[adb_opts], help="list phones: model, SoC, ABI, SDK, battery, temp"
    )
    devices.add_argument("--json", action="store_true", help="print JSON instead of a table")

    run = sub.add_parser(
        "run",
        parents=[adb_opts],
        help="benchmark a bundle (or part of it) on phones or this host",
        description="Benchmark the artifacts under PATH. PATH may be the bundle root or any folder in it; "
        "the nearest manifest.json above it names the artifacts and their sha256.",
    )
    run.add_argument("path", type=Path, help="bundle folder, e.g. dist/faceid-1.4.0/android")
    where = run.add_argument_group("where")
    where.add_argument("--serial", "-s", action="append", default=[], help="device serial (repeatable)")
    where.add_argument("--all", action="store_true", help="every connected device, in parallel")
    where.add_argument("--host", action="store_true", help="run on this machine (onnxruntime, LiteRT)")
    tools = run.add_argument_group("benchmark binaries (built for the phone's ABI)")
    tools.add_argument("--tflite-benchmark", type=Path, help="TFLite/LiteRT benchmark_model binary")
    tools.add_argument("--ort-perf-test", type=Path, help="onnxruntime_perf_test binary")
    tools.add_argument(
        "--push", type=Path, action="append", default=[], help="extra file to push, e.g. libonnxruntime.so"
    )
    how = run.add_argument_group("how")
    how.add_argument("--threads", type=int, default=4, help="inference threads (default 4)")
    how.add_argument("--runs", type=int, default=50, help="timed runs per cell (default 50)")
    how.add_argument("--warmup", type=int, default=10, help="warm-up runs (TFLite, host; default 10)")
    how.add_argument("--providers", default="cpu", help=f"comma list of {', '.join(PROVIDERS)} (default cpu)")
    how.add_argument("--cpu-mask", help="pin to cores with taskset, hex mask, e.g. f0 for the big cores")
    how.add_argument(
        "--max-temp", type=float, help="wait before each cell until the battery is at most this °C"
    )
    how.add_argument(
        "--cool-timeout", type=float, default=900.0, help="give up waiting to cool after S (900)"
    )
    how.add_argument("--bench-timeout", type=float, default=900.0, help="seconds per benchmark (default 900)")
    how.add_argument(
        "--remote-dir", default="/data/local/tmp", help="device folder for the run (default /data/local/tmp)"
    )
    how.add_argument("--keep-remote", action="store_true", help="leave pushed files on the device")
    out = run.add_argument_group("output")
    out.add_argument("--out", type=Path, help="folder (or .json file) for results (default results/)")
    out.add_argument(
        "--resume", type=Path, help="results JSON of an interrupted run: run only its missing cells"
    )

    cmp_ = sub.add_parser("compare", help="flag latency regressions between two results files (exit 1)")
    cmp_.add_argument("baseline", type=Path)
    cmp_.add_argument("new", type=Path)
    cmp_.add_argument("--max-regression", default="10%", help="allowed slow-down, e.g. 10%% (default 10%%)")
    cmp_.add_argument(
        "--metric", choices=["avg", "p50", "p90", "min"], default="avg", help="latency compared"
    )
    cmp_.add_argument(
        "--match-device", choices=["serial", "model"], default="serial", help="how devices pair up"
    )

    parse = sub.add_parser("parse", help="turn a benchmark output captured by hand into JSON")
    parse.add_argument("--tool", required=True, choices=TOOLS.names(), help="which tool printed it")
    parse.add_argument("file", help="text file with the output, or - for stdin")
    return parser


def _adb(args: argparse.Namespace) -> Adb:
    return Adb(AdbConfig(find_adb(args.adb, os.environ), args.adb_port, args.timeout))


def cmd_devices(args: argparse.Namespace) -> int:
    adb = _adb(args)
    infos = []
    for entry in adb.devices():
        if entry.state != "device":
            infos.append({"serial": entry.serial, "state": entry.state})
            continue
        info = device_info.collect(adb.device(entry.serial))
        infos.append({"state": entry.state, **info.model_dump(exclude={"kind"})})
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    if not infos:
        print("no devices (check the cable and `adb devices`)")
        return 0
    print(
        "| serial | state | model | SoC | ABI | SDK | battery | temp °C |\n|---|---|---|---|---|---|---|---|"
    )
    for d in infos:
        cols = [
            d.get(k)
            for k in ("serial", "state", "model", "soc", "abi", "sdk", "battery_level", "battery_temp_c")
        ]
        print("| " + " | ".join("" if c is None else str(c) for c in cols) + " |")
    return 0


def _settings(args: argparse.Namespace) -> BenchSettings:
    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    unknown = [p for p in providers if p not in PROVIDERS]
    if unknown or not providers:
        raise UsageError(f"unknown provider {', '.join(unknown) or '(none)'}; one of: {', '.join(PROVIDERS)}")
    if min(args.threads, args.runs) < 1 or args.warmup < 0:
        raise UsageError("--threads and --runs must be at least 1, --warmup at least 0")
    if args.cpu_mask is not None and not all(c in "0123456789abcdefABCDEF" for c in args.cpu_mask):
        raise UsageError(f"--cpu-mask {args.cpu_mask!r} is not a hex mask; e.g. f0 for CPUs 4-7")
    return BenchSettings(
        threads=args.threads,
        runs=args.runs,
        warmup=args.warmup,
        providers=providers,
        cpu_mask=args.cpu_mask,
        max_temp_c=args.max_temp,
    )


def _output_path(args: argparse.Namespace, run_id: str) -> Path:
    if args.out is None and args.resume is not None:
        return Path(args.resume)
    out = args.out or Path("results")
    return out if out.suffix == ".json" else out / f"device-bench-{run_id}.json"


def _write(result: RunResult, path: Path) -> None:
    save(result, path)
    path.with_suffix(".md").write_text(table.results_markdown(result))
    path.with_suffix(".html").write_text(table.results_html(result))


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.host and (args.serial or args.all):
        raise UsageError("--host runs on this machine; drop --serial/--all (or run twice)")
    previous = load(args.resume) if args.resume else None
    run_id = new_run_id()
    out_path = _output_path(args, run_id)
    if args.host:
        selection = select_artifacts(args.path, set(HOST_ENGINES))
        result = run_host(selection, settings, run_id)
        _write(result, out_path)
        return _report(result, out_path)
    binaries = {}
    for name, path in (("tflite", args.tflite_benchmark), ("ort", args.ort_perf_test)):
        if path is None:
            continue
        if not path.is_file():
            raise UsageError(f"{TOOLS.get(name).cli_option} {path}: no such file")
        binaries[name] = path
    if not binaries:
        raise UsageError("pass --tflite-benchmark and/or --ort-perf-test (binaries for the phone), or --host")
    for extra in args.push:
        if not extra.is_file():
            raise UsageError(f"--push {extra}: no such file")
    selection = select_artifacts(args.path, TOOLS.formats())
    adb = _adb(args)
    serials = adb.select(args.serial, args.all)
    config = DeviceRunConfig(
        run_id=run_id,
        settings=settings,
        binaries=binaries,
        extra_files=tuple(args.push),
        remote_root=args.remote_dir,
        bench_timeout_s=args.bench_timeout,
        cool_timeout_s=args.cool_timeout,
        keep_remote=args.keep_remote,
    )
    print(f"device-bench: {len(selection.artifacts)} artifact(s) on {', '.join(serials)}", file=sys.stderr)

    def on_update(result: RunResult) -> None:
        _write(result, out_path)

    result = run_devices(adb, serials, selection, config, previous, on_update)
    return _report(result, out_path)


def _report(result: RunResult, out_path: Path) -> int:
    print(table.results_markdown(result))
    print(f"results: {out_path} (+ .md, .html)", file=sys.stderr)
    problems = 0
    for run in result.devices:
        if run.error:
            print(f"device-bench: {run.device.serial}: {run.error}", file=sys.stderr)
            problems += 1
    for cell in result.cells:
        if cell.status == "failed":
            print(
                f"device-bench: {cell.device} {cell.artifact.path} [{cell.provider}]: {cell.error}",
                file=sys.stderr,
            )
            problems += 1
    missing = result.cells_with("missing")
    if missing:
        names = ", ".join(f"{c.device}:{c.artifact.path}[{c.provider}]" for c in missing)
        print(
            f"device-bench: {len(missing)} cell(s) not run: {names}. Rerun with --resume {out_path}",
            file=sys.stderr,
        )
        problems += 1
    return 1 if problems else 0


def cmd_compare(args: argparse.Namespace) -> int:
    threshold = parse_threshold(args.max_regression)
    result = compare(load(args.baseline), load(args.new), threshold, args.metric, args.match_device)
    print(table.comparison_markdown(result))
    if result.regressions:
        print(f"device-bench: {len(result.regressions)} regression(s) beyond {threshold:g}%", file=sys.stderr)
    if result.lost:
        print(
            f"device-bench: {len(result.lost)} cell(s) measured in the baseline but not now", file=sys.stderr
        )
    return 1 if result.failed else 0


def cmd_parse(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(errors="replace")
    measurement = TOOLS.get(args.tool).parse(text)
    print(measurement.model_dump_json(indent=2))
    return 0


COMMANDS = {"devices": cmd_devices, "run": cmd_run, "compare": cmd_compare, "parse": cmd_parse}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return COMMANDS[args.command](args)
    except DeviceBenchError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"device-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"device-bench: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
