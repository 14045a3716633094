"""The iOS part of the example, measured in one run: a cold build (both targets) in a fresh cache, then per
model every iOS artifact (size and ratio to FP32 ONNX, cosine / AUC drop / flips of its primary output vs
FP32; a .mlpackage is measured on the SavedModel it was converted from, since Core ML runs only on
macOS), the Core ML packages' weight dtypes, the CoreML EP coverage of the FP32, FP16 and QDQ INT8
models (onnxruntime's mobile usability checker), the time of the iOS steps with the SavedModel step
they share with Android counted once, and the Swift typecheck time of the generated package.

Run after ``python examples/faceid/prepare_data.py``: ``python bench/ios.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from platform_table import EXAMPLE, HEADER, artifact_row, cold_build, coverage_lines, test_toolchain

from packager.pipeline import BuildOutcome

IOS_STEPS = ("ios-", "validate[ios:")
SHARED_STEPS = ("saved-model[",)
ANDROID_STEPS = ("android-", "validate[android:")


def _coverage_of_variants(bundle: Path) -> list[str]:
    """CoreML EP coverage (both formats) of every ONNX variant in the bundle's models/ folder."""
    from targets.ort_mobile.ep_config import ep_coverage

    lines = []
    for path in sorted((bundle / "models").rglob("*.onnx")):
        rows = [c for c in ep_coverage(path) if c.ep.startswith("CoreML")]
        cells = ", ".join(
            f"{c.ep} {c.as_is.supported_nodes}/{c.as_is.nodes} in {c.as_is.partitions} partition(s)"
            for c in rows
        )
        lines.append(f"  {path.parent.name}/{path.name:<22}{cells}")
    return lines


def _swift_seconds(bundle: Path) -> str:
    tools, why_not = test_toolchain("swift")
    if tools is None:
        return why_not
    from swift.toolchain import bundle_accessor

    sources = [p for p in sorted((bundle / "ios").rglob("*.swift")) if p.name != "Package.swift"]
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        done = tools.typecheck([*sources, bundle_accessor(Path(scratch))])
        seconds = time.perf_counter() - start
    status = "ok" if done.returncode == 0 else f"FAILED:\n{done.stdout}{done.stderr}"
    return f"{seconds:.1f} s for {len(sources)} files ({status}; {tools.version})"


def _read_bundle(outcome: BuildOutcome) -> tuple[list[str], str]:
    return _coverage_of_variants(outcome.bundle), _swift_seconds(outcome.bundle)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=EXAMPLE)
    args = parser.parse_args()
    build, extra = cold_build(args.config, _read_bundle)
    coverage, swift = extra  # type: ignore[misc]
    for model in build.outcome.result.models:
        fp32_mb = model.reference.size_bytes / 1e6
        print(f"\n{model.name} [{model.primary_output}] vs FP32 ONNX ({fp32_mb:.2f} MB)")
        print(HEADER)
        for artifact in model.artifacts:
            if artifact.platform == "ios":
                print(artifact_row(model, artifact))
        for artifact in model.artifacts:
            coreml = artifact.details.get("coreml")
            if artifact.platform == "ios" and isinstance(coreml, dict):
                name = artifact.file.rsplit("/", 1)[-1]
                print(
                    f"  {name}: {coreml['model_type']}, {coreml['deployment_target']}, "
                    f"weights {coreml['weight_dtypes']}, converted in {coreml['seconds']} s"
                )
        print("CoreML EP coverage of the shipped .ort files (onnxruntime's mobile usability checker):")
        print("\n".join(coverage_lines(model, "ios")))
    print("CoreML EP coverage of every ONNX variant:")
    print("\n".join(coverage))
    ios = build.seconds_of(IOS_STEPS)
    shared = build.seconds_of(SHARED_STEPS)
    android = build.seconds_of(ANDROID_STEPS)
    print(
        f"\ncold build {build.seconds:.1f} s: iOS steps {ios:.1f} s + the shared onnx2tf SavedModel "
        f"{shared:.1f} s (once, for both targets) = {ios + shared:.1f} s; Android's own steps {android:.1f} s"
    )
    print(f"Swift typecheck of the generated package: {swift}")


if __name__ == "__main__":
    main()
