"""Plan the build as a list of named steps from the config, and run it.

The plan is plain data (``packager graph`` prints it); running it is :mod:`packager.scheduler`'s
job, and turning step outputs into results and a bundle is :mod:`packager.assemble`'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packager import datasets
from packager.config import Config, ModelSpec, model_field
from packager.errors import ConfigError
from packager.hashing import Hasher
from packager.quantize import registry
from packager.quantize.calibrated import CHECK_EVERY
from packager.results import OrtMode
from packager.source import source_inputs
from packager.steps import Step, StepContext, StepOutput
from packager.target import Product
from packager.tasks import check_file, find_check
from packager.validate.evaluate import LatencySettings

if TYPE_CHECKING:
    from packager.results import PreparedMeta
    from packager.validate.step import ValidateJob

OUTPUTS_FILE = "outputs.npz"
"""The file a validate step writes its outputs to (read by later validations as the FP32 reference)."""

# packager itself is listed so that a new release never reuses results computed by older code.
GRAPH_TOOLS = ("packager", "onnx", "onnxruntime")
DATA_TOOLS = ("packager", "opencv-python", "numpy")
QUANT_TOOLS = ("packager", "onnx", "onnxruntime", "onnxconverter-common", "numpy")
VALIDATE_TOOLS = ("packager", "onnxruntime", "numpy")

BASELINE = "fp32"
"""The FP32 model every variant and artifact is measured against (never called "reference": that
word names the ORT accuracy mode below)."""
BASELINE_MODES: tuple[OrtMode, ...] = ("default",)
VARIANT_MODES: tuple[OrtMode, ...] = ("default", "reference")
GATE_MODE: OrtMode = "reference"
"""Mobile INT8 kernels compute QDQ like ORT with optimizations off; gate on what the phone will do."""


@dataclass(frozen=True)
class BuildOptions:
    variants: tuple[str, ...] | None = None
    """Overrides every model's ``variants`` (command line ``--variants``)."""
    enforce_gates: bool = True

    def given(self) -> dict[str, object]:
        """Only what the command line changed, so the manifest can tell it from the config file."""
        given: dict[str, object] = {}
        if self.variants is not None:
            given["variants"] = list(self.variants)
        if not self.enforce_gates:
            given["no_gates"] = True
        return given


def variants_for(spec: ModelSpec, options: BuildOptions) -> list[str]:
    if options.variants is None:
        return list(spec.variants)
    for name in options.variants:
        registry.get(name)
    needing = [v for v in options.variants if registry.get(v).needs_calibration]
    if needing and spec.calibration is None:
        raise ConfigError("--variants", [f"{needing} need [models.calibration] for model {spec.name!r}"])
    return list(options.variants)


def _data_inputs(prefix: str, files: list[Path]) -> dict[str, Path]:
    width = len(str(len(files)))
    return {f"{prefix}{i:0{width}d}": p for i, p in enumerate(files)}


@dataclass(frozen=True)
class StepNames:
    """Step names of one model; every step of the plan is named ``kind[model]`` or ``kind[model:variant]``."""

    model: str

    @property
    def prepare(self) -> str:
        return f"prepare[{self.model}]"

    @property
    def calibration(self) -> str:
        return f"calibration-data[{self.model}]"

    @property
    def calibrate(self) -> str:
        return f"calibrate[{self.model}]"

    @property
    def evaluation(self) -> str:
        return f"evaluation[{self.model}]"

    def quantize(self, variant: str) -> str:
        return f"quantize[{self.model}:{variant}]"

    def analyze(self, variant: str) -> str:
        return f"analyze[{self.model}:{variant}]"

    def validate(self, variant: str) -> str:
        return f"validate[{self.model}:{variant}]"


def model_steps(
    config: Config, spec: ModelSpec, variants: list[str], memo: Hasher | None = None
) -> list[Step]:
    """One model's core steps: prepare, calibration data and calibration, evaluation data, the FP32
    reference's validation, and each variant's quantization and validation (see :class:`StepNames`).
    ``memo`` keeps what the plan reads from large inputs across builds (:meth:`Hasher.derived`)."""
    names = StepNames(spec.name)
    if spec.task is not None:  # a task check that cannot be found fails now, not after the first steps
        find_check(spec.task.check, config.path.parent.resolve(), task_field(config, spec))
    steps = [
        Step(
            names.prepare,
            "prepare",
            run=lambda ctx: _prepare(spec, ctx),
            inputs=source_inputs(spec.source, memo),
            params={"input": spec.input.model_dump(mode="json"), "output": spec.primary_output},
            tools=GRAPH_TOOLS,
        )
    ]
    if spec.calibration is not None and any(_reads_calibration(v) for v in variants):
        steps += _calibration_steps(spec, names, any(registry.get(v).needs_calibration for v in variants))
    steps += _evaluation_steps(config, spec, names, memo)
    for variant in variants:
        steps += _variant_steps(config, spec, names, variant)
    return steps


def _reads_calibration(variant: str) -> bool:
    recipe = registry.get(variant)
    return recipe.needs_calibration or recipe.analysis is not None


def has_analysis(spec: ModelSpec, variant: str) -> bool:
    """Whether ``variant`` of ``spec`` gets an analysis step (its recipe has one and there is data)."""
    if variant == BASELINE or spec.calibration is None:
        return False
    return registry.get(variant).analysis is not None


def _calibration_steps(spec: ModelSpec, names: StepNames, static: bool) -> list[Step]:
    """Calibration images -> tensors (data), then, for static recipes, one shared calibration."""
    assert spec.calibration is not None
    data = Step(
        names.calibration,
        "data",
        run=lambda ctx: datasets.calibration_data_step(
            spec.calibration, spec.input, prepared_meta(ctx, names.prepare).input.int_shape(), ctx.out
        ),
        inputs=_data_inputs("image", datasets.calibration_sources(spec.calibration)),
        params={
            "input": spec.input.model_dump(mode="json"),
            "count": spec.calibration.count,
            "min_count": spec.calibration.min_count,
        },
        tools=DATA_TOOLS,
        after=(names.prepare,),
    )
    if not static:
        return [data]
    return [
        data,
        Step(
            names.calibrate,
            "quantize",
            run=lambda ctx: _calibrate(spec, ctx),
            inputs={
                "reference": StepOutput(names.prepare, f"{BASELINE}.onnx"),
                "calibration": StepOutput(names.calibration, "calibration.npy"),
            },
            params={
                **spec.calibration.model_dump(mode="json", exclude={"images", "count", "min_count"}),
                "output": spec.primary_output,
                "check_every": CHECK_EVERY,  # the tuning/check split of the images (calibrated.py)
            },
            tools=QUANT_TOOLS,
            # A quantizer failing on this model fails the static variants only; bad calibration
            # *data* (the step above) is the user's to fix and stops the build with that error.
            required=False,
        ),
    ]


def _evaluation_inputs(config: Config, spec: ModelSpec, names: StepNames) -> dict[str, Path | StepOutput]:
    """The evaluation data, and the task check's own file when it is one (editing it re-measures)."""
    inputs: dict[str, Path | StepOutput] = {
        "tensors": StepOutput(names.evaluation, "tensors.npy"),
        "pairs": StepOutput(names.evaluation, "pairs.npy"),
        "labels": StepOutput(names.evaluation, "labels.npy"),
    }
    check = check_file(spec.task.check, config.path.parent.resolve()) if spec.task else None
    if check is not None:
        inputs["task_check"] = check
    return inputs


def _validate_params(config: Config, spec: ModelSpec, modes: tuple[OrtMode, ...]) -> dict[str, object]:
    return {
        "threshold": spec.evaluation.threshold,
        # Gates are applied when results are assembled, so editing a bar re-gates without re-measuring.
        "outputs": [o.model_dump(mode="json", exclude={"gates"}) for o in spec.declared_outputs],
        "task": spec.task.check if spec.task else None,
        "latency": dataclasses.asdict(_latency(config)),
        "modes": list(modes),
    }


def _evaluation_steps(config: Config, spec: ModelSpec, names: StepNames, memo: Hasher | None) -> list[Step]:
    """Evaluation images and/or pairs -> tensors, then the FP32 reference's own outputs and metrics."""
    evalset = datasets.load_evaluation(spec.evaluation, memo)
    return [
        Step(
            names.evaluation,
            "data",
            run=lambda ctx: datasets.evaluation_data_step(
                evalset, spec.input, prepared_meta(ctx, names.prepare).input.int_shape(), ctx.out
            ),
            inputs=_data_inputs("file", evalset.files()),
            params={"input": spec.input.model_dump(mode="json"), "count": spec.evaluation.count},
            tools=DATA_TOOLS,
            after=(names.prepare,),
        ),
        Step(
            names.validate(BASELINE),
            "validate",
            run=lambda ctx: _validate(
                _job(config, spec, BASELINE_MODES, f"{BASELINE} of model {spec.name}"),
                prepared_meta(ctx, names.prepare),
                ctx,
            ),
            inputs={
                "model": StepOutput(names.prepare, f"{BASELINE}.onnx"),
                **_evaluation_inputs(config, spec, names),
            },
            params=_validate_params(config, spec, BASELINE_MODES),
            tools=VALIDATE_TOOLS,
            after=(names.prepare,),
        ),
    ]


def _variant_steps(config: Config, spec: ModelSpec, names: StepNames, variant: str) -> list[Step]:
    recipe = registry.get(variant)
    inputs: dict[str, Path | StepOutput] = {"reference": StepOutput(names.prepare, f"{BASELINE}.onnx")}
    if recipe.needs_calibration:
        inputs["calibrated"] = StepOutput(names.calibrate, "")
    analysis: list[Step] = []
    if has_analysis(spec, variant):
        analysis.append(
            Step(
                names.analyze(variant),
                "quantize",
                run=lambda ctx: _analyze(spec, variant, ctx),
                inputs={
                    "reference": StepOutput(names.prepare, f"{BASELINE}.onnx"),
                    "calibration_data": StepOutput(names.calibration, "calibration.npy"),
                },
                params={"recipe": variant, **recipe.params(spec)},
                tools=QUANT_TOOLS,
                required=False,
            )
        )
        inputs["decision"] = StepOutput(names.analyze(variant), registry.DECISION_FILE)
    return [
        *analysis,
        Step(
            names.quantize(variant),
            "quantize",
            run=lambda ctx: _quantize(spec, variant, ctx),
            inputs=inputs,
            params={"recipe": variant, **recipe.params(spec)},
            tools=QUANT_TOOLS,
            required=False,
        ),
        Step(
            names.validate(variant),
            "validate",
            run=lambda ctx: _validate(
                _job(config, spec, VARIANT_MODES, f"{variant} of model {spec.name}"),
                prepared_meta(ctx, names.prepare),
                ctx,
            ),
            inputs={
                "model": StepOutput(names.quantize(variant), f"{variant}.onnx"),
                "baseline": StepOutput(names.prepare, f"{BASELINE}.onnx"),
                "reference_outputs": StepOutput(names.validate(BASELINE), OUTPUTS_FILE),
                **_evaluation_inputs(config, spec, names),
            },
            params=_validate_params(config, spec, VARIANT_MODES),
            tools=VALIDATE_TOOLS,
            after=(names.prepare,),
            required=False,
        ),
    ]


def artifact_validation_step(config: Config, spec: ModelSpec, product: Product) -> Step:
    """Validate a platform artifact against FP32 like a variant: same data, metrics and gates; the
    runner for its format decides which accuracy modes exist (``packager.validate.runners``). An
    artifact this host cannot run is measured on its ``proxy`` when it has one."""
    names = StepNames(spec.name)
    name, measured = f"validate[{product.name}]", product.source
    label = f"{product.platform} {product.format} artifact of {spec.name}:{product.variant}"
    if product.not_validated_reason is not None and product.proxy is not None:
        # Named after the stand-in, not the product: artifacts made from one stand-in (an FP16 and an
        # INT8-weights .mlpackage of one SavedModel) share one measurement (plan.py plans it once).
        measured = product.proxy
        name = f"validate[{product.platform}:{spec.name}:{measured.file}]"
        label = f"{product.platform} {product.format} artifacts of {spec.name} (on their {measured.file})"
    return Step(
        name,
        "validate",
        run=lambda ctx: _validate(
            _job(config, spec, VARIANT_MODES, label),
            prepared_meta(ctx, names.prepare),
            ctx,
        ),
        inputs={
            "model": measured,
            "baseline": StepOutput(names.prepare, f"{BASELINE}.onnx"),
            "reference_outputs": StepOutput(names.validate(BASELINE), OUTPUTS_FILE),
            **_evaluation_inputs(config, spec, names),
        },
        params={**_validate_params(config, spec, VARIANT_MODES), "format": product.format},
        tools=VALIDATE_TOOLS,
        after=(names.prepare,),
        required=False,
    )


def _latency(config: Config) -> LatencySettings:
    return LatencySettings(config.build.latency_runs, config.build.latency_warmup, config.build.threads)


def _job(config: Config, spec: ModelSpec, modes: tuple[OrtMode, ...], label: str) -> ValidateJob:
    from packager.validate.step import ValidateJob

    return ValidateJob(
        spec, config.path.parent.resolve(), modes, _latency(config), label, task_field(config, spec)
    )


def task_field(config: Config, spec: ModelSpec) -> str:
    """The field that names a model's task check, as its errors show it
    (``packager.toml [models] 'm'.task.check``)."""
    return f"{config.path} {model_field(spec.name, 'task.check')}"


def prepared_meta(ctx: StepContext, prepare: str) -> PreparedMeta:
    """The prepare step's typed record, for steps that run after it."""
    from packager.results import PreparedMeta

    return PreparedMeta.model_validate(ctx.outputs[prepare])


# The step bodies import their tools (onnx, onnxruntime, OpenCV) when they run: a build whose steps are
# all cached (a no-op rebuild) only plans, and must not pay ~0.5 s of imports for it.


def _prepare(spec: ModelSpec, ctx: StepContext) -> dict[str, object]:
    from packager.prepare import prepare_step

    return prepare_step(spec, ctx.out)


def _calibrate(spec: ModelSpec, ctx: StepContext) -> dict[str, object]:
    from packager.quantize.step import calibrate_step

    return calibrate_step(spec, ctx)


def _analyze(spec: ModelSpec, variant: str, ctx: StepContext) -> dict[str, object]:
    from packager.quantize.step import analyze_step

    return analyze_step(spec, variant, ctx)


def _quantize(spec: ModelSpec, variant: str, ctx: StepContext) -> dict[str, object]:
    from packager.quantize.step import quantize_step

    return quantize_step(spec, variant, ctx)


def _validate(job: ValidateJob, prepared: PreparedMeta, ctx: StepContext) -> dict[str, object]:
    from packager.validate.step import validate_step

    return validate_step(job, prepared, ctx)
