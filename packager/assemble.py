"""Step outputs -> typed results (with gates applied) and the list of files the bundle ships."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from packager import preprocess
from packager.build import (
    GATE_MODE,
    REFERENCE,
    REFERENCE_MODES,
    BuildOptions,
    PlanOutcome,
    StepNames,
    variants_for,
)
from packager.config import Config, ModelSpec
from packager.results import BuildResult, IOInfo, ModelResult, ModeResult, VariantFailure, VariantResult
from packager.source import source_files, source_sha256
from packager.steps import Hasher, StepFailure, StepResult, tool_versions
from packager.validate.gates import OutputGatePlan, evaluate_gates, evaluate_task_gates, plan_gates
from packager.validate.metrics import artifact_size

REPORTED_TOOLS = (
    "packager",
    "onnx",
    "onnxruntime",
    "onnxconverter-common",
    "numpy",
    "opencv-python",
)
"""The tools whose output is in this bundle; platform targets add their converters' versions."""


@dataclass(frozen=True)
class BundleFile:
    source: Path
    dest: str
    model: str
    variant: str
    sha256: str
    size_bytes: int
    inputs: list[IOInfo]
    outputs: list[IOInfo]


def host_facts() -> dict[str, str]:
    """What the host-side numbers depend on: the INT8 default-kernel path differs without VNNI."""
    flags = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(
            (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), ""
        )
        flags = next((ln for ln in cpuinfo.splitlines() if ln.startswith("flags")), "")
    except OSError:
        model = platform.processor()
    return {
        "cpu": model or platform.machine(),
        "vnni": "yes" if ("avx512_vnni" in flags or "avx_vnni" in flags) else "no",
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def _modes(meta: dict[str, object]) -> dict[str, ModeResult]:
    raw = meta["modes"]
    assert isinstance(raw, dict)
    return {mode: ModeResult.model_validate(value) for mode, value in raw.items()}


def _variant(
    spec: ModelSpec,
    name: str,
    path: Path,
    validate: StepResult,
    reference: ModeResult | None,
    fp32_size: int,
    details: dict[str, object],
    hasher: Hasher,
    gate_plans: list[OutputGatePlan],
) -> VariantResult:
    modes = _modes(validate.meta)
    gate_mode = REFERENCE_MODES[0] if reference is None else GATE_MODE
    gates = []
    if reference is not None:
        gates = evaluate_gates(modes[gate_mode], reference, gate_plans)
        gates += evaluate_task_gates(modes[gate_mode], spec.task.gates if spec.task else {})
    size = artifact_size(path)
    return VariantResult(
        variant=name,
        file=f"models/{spec.name}/{name}.onnx",
        sha256=hasher.file(path),
        size_bytes=size,
        size_ratio=size / fp32_size,
        modes=modes,
        gate_mode=gate_mode,
        gates=gates,
        passed=all(g.passed for g in gates),
        details=details,
    )


def _failure(spec: ModelSpec, variant: str, failure: StepFailure) -> VariantFailure:
    return VariantFailure(
        variant=variant,
        step=failure.root,
        error=str(failure.error),
        optional=variant in spec.optional_variants,
    )


def assemble(
    config: Config, options: BuildOptions, plan: PlanOutcome, hasher: Hasher
) -> tuple[BuildResult, list[BundleFile]]:
    """Typed results of every model and the files to ship; failed variants are listed, not shipped."""
    results = plan.results
    models: list[ModelResult] = []
    files: list[BundleFile] = []
    notes = [
        "Mixed precision tunes its float-node set on the calibration images, never on the evaluation pairs.",
        "Phones, Core ML prediction (macOS) and platform artifacts are not part of this build: every number "
        "here is measured on this host with onnxruntime on CPU.",
    ]
    for spec in config.models:
        m, names = spec.name, StepNames(spec.name)
        prepared = results[names.prepare]
        sources = source_files(spec.source)
        fp32_path = prepared.out / f"{REFERENCE}.onnx"
        fp32_size = artifact_size(fp32_path)
        ref_validate = results[names.validate(REFERENCE)]
        io_in = [IOInfo.model_validate(prepared.meta["input"])]
        measured = IOInfo.model_validate(prepared.meta["output"])
        outputs_meta = prepared.meta["outputs"]
        assert isinstance(outputs_meta, list)
        io_out = [IOInfo.model_validate(o) for o in outputs_meta]  # every output the app receives
        reference = _variant(
            spec, REFERENCE, fp32_path, ref_validate, None, fp32_size, {"prepared": prepared.meta}, hasher, []
        )
        ref_mode = reference.modes[REFERENCE_MODES[0]]
        has_pairs = any(o.verification is not None for o in ref_mode.outputs)
        gate_plans = plan_gates([o.name for o in io_out], spec.declared_outputs, spec.gates, has_pairs)
        built = [(reference, fp32_path)]
        failed: list[VariantFailure] = []
        for name in variants_for(spec, options):
            failure = plan.failures.get(names.quantize(name)) or plan.failures.get(names.validate(name))
            if failure is not None:
                failed.append(_failure(spec, name, failure))
                continue
            quantized = results[names.quantize(name)]
            path = quantized.out / f"{name}.onnx"
            validate = results[names.validate(name)]
            built.append(
                (
                    _variant(
                        spec, name, path, validate, ref_mode, fp32_size, quantized.meta, hasher, gate_plans
                    ),
                    path,
                )
            )
        variants = [v for v, _ in built[1:]]
        files += [
            BundleFile(path, v.file, m, v.variant, v.sha256, v.size_bytes, io_in, io_out) for v, path in built
        ]
        evaluation = dict(results[names.evaluation].meta)
        evaluation["threshold"] = spec.evaluation.threshold
        calibration = results.get(names.calibration)
        if calibration is not None:
            evaluation["calibration_images"] = calibration.meta["count"]
            notes += [str(w) for w in calibration.meta.get("warnings", [])]  # type: ignore[union-attr]
        models.append(
            ModelResult(
                name=m,
                source=spec.source.name,
                source_sha256=source_sha256(sources, hasher.file),
                source_files={p.name: hasher.file(p) for p in sources},
                opset=int(prepared.meta["opset"]),  # type: ignore[arg-type]
                inputs=io_in,
                outputs=io_out,
                preprocessing=preprocess.describe(spec.input),
                evaluation=evaluation,
                reference=reference,
                variants=variants,
                failed=failed,
                primary_output=measured.name,
                output_kinds={o.name: o.kind for o in ref_mode.outputs},
            )
        )
    passed = all(v.passed for m in models for v in m.variants) and not any(
        not f.optional for m in models for f in m.failed
    )
    result = BuildResult(
        project=config.project.name,
        version=config.project.version,
        config_sha256=config.digest(),
        gates_enforced=options.enforce_gates,
        passed=passed,
        tool_versions=tool_versions(REPORTED_TOOLS),
        host=host_facts(),
        models=models,
        notes=notes,
        settings={"config": config.portable(), "command_line": options.given()},
    )
    return result, files
