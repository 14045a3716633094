"""Step outputs -> typed results (with gates applied) and the list of files the bundle ships."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from packager import preprocess
from packager.build import BASELINE, GATE_MODE, BuildOptions, StepNames
from packager.cache import Hasher
from packager.config import Config, ModelSpec
from packager.datasets import CalibrationDataMeta, EvaluationMeta
from packager.plan import Plan
from packager.results import (
    BuildResult,
    EvaluationFacts,
    IOInfo,
    ModelResult,
    ModeResult,
    PreparedMeta,
    VariantFailure,
    VariantResult,
)
from packager.scheduler import PlanOutcome
from packager.source import source_sha256
from packager.steps import StepFailure, StepResult, tool_versions
from packager.target import ArtifactRecord, ArtifactRecords, Product
from packager.validate.gates import OutputGatePlan, evaluate_gates, evaluate_task_gates, plan_gates
from packager.validate.metrics import artifact_size
from packager.validate.step import ValidationMeta

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
    nondeterminism: str | None = None
    """The making step's :attr:`ArtifactRecord.nondeterminism`: why a rebuild may give other bytes."""


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


def _gate_mode(modes: dict[str, ModeResult]) -> str:
    """Gate on the reference mode when the runner has it (what ARM INT8 kernels compute), else on
    the one mode it has (e.g. the LiteRT interpreter's default)."""
    return GATE_MODE if GATE_MODE in modes else next(iter(modes), "default")


def _artifact(
    spec: ModelSpec,
    product: Product,
    path: Path,
    validate: StepResult | None,
    reference: ModeResult | None,
    fp32_size: int,
    record: ArtifactRecord,
    hasher: Hasher,
    gate_plans: list[OutputGatePlan],
) -> VariantResult:
    """One product's result: its file facts, validation per mode (or why not) and its gates."""
    modes = ValidationMeta.model_validate(validate.meta).modes if validate is not None else {}
    gate_mode = _gate_mode(modes)
    gates = []
    if reference is not None and modes:
        gates = evaluate_gates(modes[gate_mode], reference, gate_plans)
        gates += evaluate_task_gates(modes[gate_mode], spec.task.gates if spec.task else {})
    size = artifact_size(path)
    return VariantResult(
        variant=product.variant,
        file=product.bundle_path,
        sha256=hasher.path(path),
        size_bytes=size,
        size_ratio=size / fp32_size,
        modes=modes,
        gate_mode=gate_mode,
        gates=gates,
        passed=all(g.passed for g in gates),
        details=record.details,
        platform=product.platform,
        runtime=product.runtime,
        format=product.format,
        precision=product.precision,
        not_validated_reason=product.not_validated_reason,
        validated_on=product.proxy_label if product.not_validated_reason and modes else None,
        not_shipped_reason=record.rejected,
        inputs=record.inputs,
        outputs=record.outputs,
    )


def merged_details(made: dict[str, object], described: dict[str, object]) -> dict[str, object]:
    """A core variant's details: its making step's record, then the facts of the step that describes
    it (a recipe's analysis); findings (lists) of both add up, other facts of the describing step win."""
    details = dict(made)
    for key, value in described.items():
        known = details.get(key)
        details[key] = [*known, *value] if isinstance(known, list) and isinstance(value, list) else value
    return details


def _record(product: Product, results: dict[str, StepResult]) -> ArtifactRecord:
    """What the steps say about a product: a core variant's recipe facts, or a target's
    :class:`ArtifactRecords` entry from its making step and its ``details_step``, merged."""
    made = results[product.source.step]
    if product.platform == "any":
        described = results.get(product.details_step) if product.details_step is not None else None
        details = merged_details(made.meta, described.meta if described else {})
        return ArtifactRecord(details=details)
    record = ArtifactRecord()
    for step in (product.source.step, product.details_step):
        if step is None or step not in results:
            continue
        found = ArtifactRecords.model_validate(results[step].meta).artifacts.get(product.source.file)
        if found is not None:
            record = ArtifactRecord(
                inputs=found.inputs or record.inputs,
                outputs=found.outputs or record.outputs,
                details={**record.details, **found.details},
                rejected=found.rejected or record.rejected,
                nondeterminism=found.nondeterminism or record.nondeterminism,
            )
    return record


def _choose(products: list[Product], built: list[VariantResult]) -> list[VariantResult]:
    """Among products sharing a ``choice``, the first that passed ships; the others get a
    ``not_shipped_reason``. When none passed, the first ships (and fails the build)."""
    by_file = {p.bundle_path: p for p in products}
    chosen: dict[tuple[str, str], str] = {}
    groups: dict[tuple[str, str], list[VariantResult]] = {}
    for result in built:
        product = by_file[result.file]
        if product.choice is not None and result.not_shipped_reason is None:
            groups.setdefault((product.platform, product.choice), []).append(result)
    for key, members in groups.items():
        winner = next((r for r in members if r.passed), members[0])
        chosen[key] = winner.file
    out = []
    for result in built:
        product = by_file[result.file]
        key = (product.platform, product.choice or "")
        if product.choice is not None and key in chosen and chosen[key] != result.file:
            winner = by_file[chosen[key]]
            result = result.model_copy(
                update={"not_shipped_reason": f"alternative of {winner.bundle_path} ({product.choice}), "
                        "which comes first and passed its gates"}
            )  # fmt: skip
        out.append(result)
    return out


def _failure(product: Product, failure: StepFailure) -> VariantFailure:
    """A platform artifact is named by its platform and file (``android:int8.tflite``): several files
    are made from one variant."""
    file = product.bundle_path.rsplit("/", 1)[-1]
    return VariantFailure(
        variant=product.variant if product.platform == "any" else f"{product.platform}:{file}",
        step=failure.root,
        error=str(failure.error),
        optional=not product.required,
    )


def _reported_tools(plan: Plan) -> tuple[str, ...]:
    """:data:`REPORTED_TOOLS` plus every tool a planned step names (a target's converters: onnx2tf,
    tensorflow, coremltools...), so the manifest lists every tool that made a shipped file."""
    named = {tool for step in plan.steps for tool in step.tools}
    return (*REPORTED_TOOLS, *sorted(named - set(REPORTED_TOOLS)))


def assemble(
    config: Config, options: BuildOptions, plan: Plan, outcome: PlanOutcome, hasher: Hasher
) -> tuple[BuildResult, list[BundleFile]]:
    """Typed results of every planned product and the files to ship; failed products are listed,
    not shipped. Iterates ``plan.products``: the plan is never re-derived here."""
    results = outcome.results
    models: list[ModelResult] = []
    files: list[BundleFile] = []
    notes = [
        "Mixed precision tunes its float-node set on the calibration images, never on the evaluation data.",
        "Phones and Core ML prediction (macOS) are not part of this build: every number here is measured "
        "on this host (onnxruntime on CPU, the LiteRT interpreter for .tflite); an artifact this host cannot "
        "run is measured on the stand-in its validated_on names, or not at all.",
    ]
    for spec in config.models:
        m, names = spec.name, StepNames(spec.name)
        prepared_step = results[names.prepare]
        prepared = PreparedMeta.model_validate(prepared_step.meta)
        # The files the prepare step hashed: listing a model's external data parses the whole
        # protobuf (0.19 s for SFace), so it is not done a second time here.
        prepare = next(step for step in plan.steps if step.name == names.prepare)
        sources = [path for path in prepare.inputs.values() if isinstance(path, Path)]
        fp32_path = prepared_step.out / f"{BASELINE}.onnx"
        fp32_size = artifact_size(fp32_path)
        io_in, measured, io_out = [prepared.input], prepared.output, prepared.outputs
        products = [p for p in plan.products if p.model == m]
        reference_product = next(p for p in products if p.platform == "any" and p.variant == BASELINE)
        reference = _artifact(
            spec, reference_product, fp32_path, results[names.validate(BASELINE)], None, fp32_size,
            ArtifactRecord(details={"prepared": prepared_step.meta}), hasher, [],
        )  # fmt: skip
        ref_mode = reference.modes[reference.gate_mode]
        has_pairs = any(o.verification is not None for o in ref_mode.outputs)
        gate_plans = plan_gates([o.name for o in io_out], spec.declared_outputs, spec.gates, has_pairs)
        built: list[tuple[VariantResult, Path]] = [(reference, fp32_path)]
        unstable: dict[str, str] = {}  # bundle path -> why a rebuild may give other bytes
        failed: list[VariantFailure] = []
        for product in products:
            if product is reference_product:
                continue
            validation = plan.validations.get(product.name)
            # The making step, its validation, or the step that describes it (a speed check) failed.
            failure = next(
                (
                    outcome.failures[step]
                    for step in (product.source.step, validation, product.details_step)
                    if step is not None and step in outcome.failures
                ),
                None,
            )
            if failure is not None:
                failed.append(_failure(product, failure))
                continue
            path = results[product.source.step].out / product.source.file
            validate = results[validation] if validation else None
            record = _record(product, results)
            if record.nondeterminism is not None:
                unstable[product.bundle_path] = record.nondeterminism
            built.append((_artifact(spec, product, path, validate, ref_mode, fp32_size, record, hasher,
                                    gate_plans), path))  # fmt: skip
        chosen = _choose(products, [v for v, _ in built])
        built = [(v, path) for v, (_, path) in zip(chosen, built, strict=True)]
        files += [
            BundleFile(
                path,
                v.file,
                m,
                v.variant,
                v.sha256,
                v.size_bytes,
                v.inputs or io_in,
                v.outputs or io_out,
                nondeterminism=unstable.get(v.file),
            )
            for v, path in built
            if v.not_shipped_reason is None
        ]
        calibration = results.get(names.calibration)
        calibration_images = None
        if calibration is not None:
            data = CalibrationDataMeta.model_validate(calibration.meta)
            calibration_images = data.count
            notes += data.warnings
        evaluation = EvaluationFacts(
            **EvaluationMeta.model_validate(results[names.evaluation].meta).model_dump(),
            threshold=spec.evaluation.threshold,
            calibration_images=calibration_images,
        )
        models.append(
            ModelResult(
                name=m,
                source=spec.source.name,
                source_sha256=source_sha256(sources, hasher.file),
                source_files={p.name: hasher.file(p) for p in sources},
                opset=prepared.opset,
                inputs=io_in,
                outputs=io_out,
                preprocessing=preprocess.describe(spec.input),
                evaluation=evaluation,
                reference=reference,
                variants=[v for v, _ in built[1:] if v.platform == "any"],
                artifacts=[v for v, _ in built[1:] if v.platform != "any"],
                failed=failed,
                primary_output=measured.name,
                output_kinds={o.name: o.kind for o in ref_mode.outputs},
            )
        )
    shipped = [v for m in models for v in [*m.variants, *m.artifacts] if v.not_shipped_reason is None]
    passed = all(v.passed for v in shipped) and not any(not f.optional for m in models for f in m.failed)
    result = BuildResult(
        project=config.project.name,
        version=config.project.version,
        config_sha256=config.digest(),
        gates_enforced=options.enforce_gates,
        passed=passed,
        tool_versions=tool_versions(_reported_tools(plan)),
        host=host_facts(),
        models=models,
        notes=notes,
        settings={"config": config.portable(), "command_line": options.given()},
    )
    return result, files
