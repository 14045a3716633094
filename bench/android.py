"""The Android part of the example, measured in one run: a cold build in a fresh cache, then a table
per model of every Android artifact (size and ratio to FP32 ONNX, cosine / AUC drop / decision flips
of its primary output vs FP32, host p50), the EP coverage of FP32 vs the shipped INT8 .ort, the time
of the Android steps (onnx2tf, ORT conversion, their validation) and the Kotlin compile time of the
generated module (kotlinc from npm, as the tests install it; skipped when npm or a JDK is missing).

Run after ``python examples/faceid/prepare_data.py``: ``python bench/android.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from packager.build import BuildOptions
from packager.config import load_config
from packager.pipeline import build_project
from packager.results import ModelResult, VariantResult
from packager.steps import Step, StepFailure, StepResult

ROOT = Path(__file__).resolve().parents[1]
ANDROID_STEPS = ("android-", "saved-model[", "validate[android:")


def _row(model: ModelResult, artifact: VariantResult) -> str:
    name = model.primary_output
    fp32 = model.reference.modes["default"].output(name)
    mode = artifact.modes.get(artifact.gate_mode)
    if mode is None:
        return (
            f"{artifact.file.rsplit('/', 2)[-2] + '/' + artifact.file.rsplit('/', 1)[-1]:<34} not validated"
        )
    out = mode.output(name)
    auc = (
        f"{fp32.verification.auc - out.verification.auc:>9.4f}"
        if fp32.verification and out.verification
        else f"{'n/a':>9}"
    )
    flips = f"{out.decision_flips:>7.4f}" if out.decision_flips is not None else f"{'n/a':>7}"
    speed = artifact.modes.get("default")
    p50 = f"{speed.latency.p50_ms:>8.2f}" if speed else f"{'n/a':>8}"
    shipped = "" if artifact.not_shipped_reason is None else "  (not shipped)"
    short = artifact.file.rsplit("/", 1)[-1]
    return (
        f"{short:<22}{artifact.runtime:<12}{artifact.size_bytes / 1e6:>8.2f}{artifact.size_ratio:>7.3f}"
        f"{out.cosine.mean:>10.5f}{out.cosine.min:>9.5f}{auc}{flips}{p50}"
        f"  {'pass' if artifact.passed else 'FAIL'}{shipped}"
    )


def _coverage(model: ModelResult) -> None:
    for artifact in model.artifacts:
        rows = artifact.details.get("ep_coverage")
        if artifact.format != "ort" or not isinstance(rows, list):
            continue
        cells = ", ".join(
            f"{r['ep']} {r['supported_nodes']}/{r['total_nodes']} in {r['partitions']} partition(s) "
            f"({r['verdict']})"
            for r in rows
        )
        print(f"  {artifact.file.rsplit('/', 1)[-1]:<22}{cells}")


def _kotlin_seconds(bundle: Path) -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from kotlin.toolchain import toolchain
    except ImportError as exc:
        return f"n/a ({exc})"
    try:
        tools = toolchain()
    except BaseException as exc:  # pytest.skip raises an Exception subclass of BaseException
        return f"n/a ({exc})"
    sources = sorted((bundle / "android").rglob("*.kt"))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        job = tools.kotlinc_start(sources, Path(out), "-Werror")
        stdout, stderr = job.communicate(timeout=900)
        seconds = time.perf_counter() - start
    status = "ok" if job.returncode == 0 else f"FAILED:\n{stdout}{stderr}"
    return f"{seconds:.1f} s for {len(sources)} files ({status})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "faceid" / "packager.toml")
    args = parser.parse_args()
    config = load_config(args.config)
    timings: dict[str, float] = {}

    def on_step(step: Step, outcome: StepResult | StepFailure) -> None:
        if isinstance(outcome, StepResult):
            timings[step.name] = outcome.seconds

    with tempfile.TemporaryDirectory(prefix="packager-bench-android-") as tmp:
        build = config.build.model_copy(update={"cache": Path(tmp) / "cache", "out": Path(tmp) / "dist"})
        config = config.model_copy(update={"build": build})
        start = time.perf_counter()
        outcome = build_project(config, BuildOptions(enforce_gates=False), on_step=on_step)
        cold = time.perf_counter() - start
        kotlin = _kotlin_seconds(outcome.bundle)
    android = sum(t for name, t in timings.items() if name.startswith(ANDROID_STEPS))
    for model in outcome.result.models:
        fp32_mb = model.reference.size_bytes / 1e6
        print(f"\n{model.name} [{model.primary_output}] vs FP32 ONNX ({fp32_mb:.2f} MB)")
        print(
            f"{'artifact':<22}{'runtime':<12}{'MB':>8}{'ratio':>7}{'mean cos':>10}{'min cos':>9}"
            f"{'AUC drop':>9}{'flips':>7}{'p50 ms':>8}  gate"
        )
        for artifact in model.artifacts:
            if artifact.platform == "android":
                print(_row(model, artifact))
        print("EP coverage (onnxruntime's mobile usability checker; XNNPACK estimated from its op rules):")
        _coverage(model)
    print(f"\ncold build {cold:.1f} s, of which Android steps {android:.1f} s")
    print(f"Kotlin compile of the generated module: {kotlin}")


if __name__ == "__main__":
    main()
