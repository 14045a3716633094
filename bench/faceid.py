"""Measured figures for the SFace example, from one cold build and one no-op rebuild.

Prints each variant's size ratio and, for the model's primary (embedding) output, cosine to FP32,
AUC drop and decision flips ("n/a" without pairs), with host latency in both ORT modes, plus the
INT8/FP32 latency ratios and the build times. Run after ``python examples/faceid/prepare_data.py``;
uses a fresh cache so the cold time is real.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from packager.build import BuildOptions
from packager.config import load_config
from packager.pipeline import build_project

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "faceid" / "packager.toml")
    args = parser.parse_args()
    config = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="packager-bench-") as tmp:
        build = config.build.model_copy(update={"cache": Path(tmp) / "cache", "out": Path(tmp) / "dist"})
        config = config.model_copy(update={"build": build})
        start = time.perf_counter()
        outcome = build_project(config, BuildOptions(enforce_gates=False))
        cold = time.perf_counter() - start
        start = time.perf_counter()
        again = build_project(config, BuildOptions(enforce_gates=False))
        warm = time.perf_counter() - start
        assert all(s.cached for s in again.steps), "no-op rebuild ran a step"
    for model in outcome.result.models:
        name = model.primary_output  # the embedding: verification and flips are measured on it
        ref = model.reference.modes["default"]
        ref_out = ref.output(name)
        pairs = ref_out.verification
        print(
            f"\n{model.name} [{name}, {ref_out.kind}]: {pairs.positives if pairs else 0} positive / "
            f"{pairs.negatives if pairs else 0} negative pairs"
        )
        header = f"{'variant':<13}{'mode':<10}{'size':>7}{'mean cos':>10}{'min cos':>9}{'AUC drop':>10}"
        print(header + f"{'flips':>8}{'p50 ms':>8}{'p90 ms':>8}{'p50/FP32':>9}  gate")
        for v in [model.reference, *model.variants]:
            for mode_name, mode in v.modes.items():
                out = mode.output(name)
                auc_drop = (
                    f"{ref_out.verification.auc - out.verification.auc:>10.4f}"
                    if ref_out.verification and out.verification
                    else f"{'n/a':>10}"
                )
                flips = f"{out.decision_flips:>8.4f}" if out.decision_flips is not None else f"{'n/a':>8}"
                gate = ("pass" if v.passed else "FAIL") if mode_name == v.gate_mode and v.gates else ""
                print(
                    f"{v.variant:<13}{mode_name:<10}{v.size_ratio:>7.3f}{out.cosine.mean:>10.5f}"
                    f"{out.cosine.min:>9.4f}{auc_drop}{flips}{mode.latency.p50_ms:>8.2f}"
                    f"{mode.latency.p90_ms:>8.2f}{mode.latency.p50_ms / ref.latency.p50_ms:>9.2f}  {gate}"
                )
        mixed = next((v for v in model.variants if v.variant == "mixed"), None)
        if mixed:
            floats = [n["node"] for n in mixed.details.get("float_nodes", [])]  # type: ignore[union-attr]
            print(
                f"mixed keeps {len(floats)} nodes in float: {', '.join(floats) or '-'}; "
                f"stop: {mixed.details.get('stop_reason')}"
            )
    print(f"\ncold build {cold:.1f}s, no-op rebuild {warm:.2f}s (speed-up {cold / warm:.0f}x)")


if __name__ == "__main__":
    main()
