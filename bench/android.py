"""The Android part of the example, measured in one run: a cold build in a fresh cache, then a table
per model of every Android artifact (size and ratio to FP32 ONNX, cosine / AUC drop / decision flips
of its primary output vs FP32, host p50), the EP coverage of FP32 vs the shipped INT8 .ort, the time
of the Android steps (onnx2tf, ORT conversion, their validation) and the Kotlin compile time of the
generated module (kotlinc from npm, as the tests install it; skipped when npm or a JDK is missing).

Run after ``python examples/faceid/prepare_data.py``: ``python bench/android.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from platform_table import EXAMPLE, HEADER, artifact_row, cold_build, coverage_lines, test_toolchain

from packager.pipeline import BuildOutcome

ANDROID_STEPS = ("android-", "saved-model[", "validate[android:")


def _kotlin_seconds(outcome: BuildOutcome) -> str:
    bundle = outcome.bundle
    tools, why_not = test_toolchain("kotlin")
    if tools is None:
        return why_not
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
    parser.add_argument("--config", type=Path, default=EXAMPLE)
    args = parser.parse_args()
    build, kotlin = cold_build(args.config, _kotlin_seconds)
    for model in build.outcome.result.models:
        fp32_mb = model.reference.size_bytes / 1e6
        print(f"\n{model.name} [{model.primary_output}] vs FP32 ONNX ({fp32_mb:.2f} MB)")
        print(HEADER)
        for artifact in model.artifacts:
            if artifact.platform == "android":
                print(artifact_row(model, artifact))
        print("EP coverage (onnxruntime's mobile usability checker; XNNPACK estimated from its op rules):")
        print("\n".join(coverage_lines(model, "android")))
    android = build.seconds_of(ANDROID_STEPS)
    print(f"\ncold build {build.seconds:.1f} s, of which Android steps {android:.1f} s")
    print(f"Kotlin compile of the generated module: {kotlin}")


if __name__ == "__main__":
    main()
