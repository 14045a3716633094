"""The build plan: every step, and every product (artifact) those steps make.

The core plans each model's steps (:mod:`packager.build`) and its ONNX products (the FP32 reference
and each variant, platform ``any``); each platform target named by a top-level config table adds
its own steps and products through :mod:`packager.target`. Every product that this host can run is
validated against FP32 by a step the core adds, with the same metrics and gates as the variants.
``assemble`` then iterates the products; nothing downstream re-derives the plan.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from packager import build
from packager.build import BASELINE, BuildOptions, StepNames, variants_for
from packager.config import Config, ModelSpec
from packager.errors import ConfigError
from packager.hashing import Hasher
from packager.quantize import registry
from packager.steps import Step, StepOutput
from packager.target import ModelProducts, Product, TargetContext, installed_targets


@dataclass(frozen=True)
class Plan:
    steps: list[Step]
    """In dependency order; names are unique."""
    products: list[Product]
    validations: dict[str, str]
    """Product name -> the step that validates it (absent: not validated, see the product's reason)."""


def _identity(step: Step) -> tuple[object, ...]:
    """What makes two requests for a step the same step: everything but the code object."""
    return (step.kind, sorted(step.inputs.items(), key=str), step.params, step.tools, step.after)


class _Steps:
    """Steps by name: asking twice for the same step shares it; the same name with a different
    definition is an error (two targets disagreeing about a shared step)."""

    def __init__(self) -> None:
        self.by_name: dict[str, Step] = {}

    def add(self, step: Step, owner: str) -> None:
        known = self.by_name.get(step.name)
        if known is None:
            self.by_name[step.name] = step
        elif _identity(known) != _identity(step):
            raise ConfigError(
                f"target {owner}",
                [f"step {step.name!r} is already planned with different inputs or parameters"],
            )


def core_products(spec: ModelSpec, variants: list[str]) -> list[Product]:
    """The FP32 reference and each ONNX variant of one model, as shipped under ``models/<model>/``."""
    names = StepNames(spec.name)

    def onnx(variant: str, step: str) -> Product:
        return Product(
            model=spec.name,
            variant=variant,
            platform="any",
            runtime="onnxruntime",
            format="onnx",
            precision=registry.precision_of(variant),
            bundle_path=f"models/{spec.name}/{variant}.onnx",
            source=StepOutput(step, f"{variant}.onnx"),
            required=variant not in spec.optional_variants,
            # The recipe's analysis of the calibration data (FP16's range audit) describes it too.
            details_step=names.analyze(variant) if build.has_analysis(spec, variant) else None,
        )

    return [onnx(BASELINE, names.prepare), *(onnx(v, names.quantize(v)) for v in variants)]


def _upstream(spec: ModelSpec, products: list[Product], steps: _Steps) -> ModelProducts:
    names = StepNames(spec.name)
    return ModelProducts(
        spec=spec,
        prepared=StepOutput(names.prepare, f"{BASELINE}.onnx"),
        variants={p.variant: p.source for p in products if p.model == spec.name},
        calibration=StepOutput(names.calibration, "calibration.npy")
        if names.calibration in steps.by_name
        else None,
        evaluation=StepOutput(names.evaluation, "tensors.npy"),
    )


def make_plan(config: Config, options: BuildOptions, memo: Hasher | None = None) -> Plan:
    """Core steps and products, then each configured target's, then a validation step per product.

    ``memo`` keeps what planning reads from large inputs (an ONNX model's external-data names, a
    pairs file's parse) across builds while they are unchanged; a build passes its cache's
    (:attr:`Cache.memo_file`).

    Raises:
        ConfigError: a configured target is not installed, or two targets plan one step differently.
    """
    steps = _Steps()
    products: list[Product] = []
    validations: dict[str, str] = {}
    for spec in config.models:
        variants = variants_for(spec, options)
        for step in build.model_steps(config, spec, variants, memo):
            steps.add(step, "core")
        model_products = core_products(spec, variants)
        products += model_products
        names = StepNames(spec.name)
        validations.update({p.name: names.validate(p.variant) for p in model_products})
    installed = installed_targets() if config.targets else {}
    upstream = [_upstream(spec, products, steps) for spec in config.models]
    for name, table in config.targets.items():
        target = installed[name]
        try:
            planned = target.plan(TargetContext(config, target.schema.model_validate(table), upstream))
        except ConfigError as exc:  # a target's check of its table against the models: name the file
            raise ConfigError(config.path, exc.problems) from None
        for step in planned.steps:
            # A platform step failing fails its artifacts, not the build (unless they are required).
            steps.add(dataclasses.replace(step, required=False), name)
        for product in planned.products:
            products.append(product)
            if product.not_validated_reason is None or product.proxy is not None:
                step = build.artifact_validation_step(config, config.model(product.model), product)
                steps.add(step, "core")
                validations[product.name] = step.name
    ordered = list(steps.by_name.values())
    return Plan(ordered, products, validations)


def subset(config: Config, models: list[str] | None, platforms: list[str] | None) -> Config:
    """The config with only the named models and platform tables (None: all of them).

    Raises:
        ConfigError: a name the config does not have, listing the ones it has.
    """
    problems = []
    known_models = [m.name for m in config.models]
    for name in models or []:
        if name not in known_models:
            problems.append(f"--models: no model named {name!r} (the config has {', '.join(known_models)})")
    for name in platforms or []:
        if name not in config.targets:
            has = ", ".join(config.targets) or "no platform tables"
            problems.append(f"--platforms: no [{name}] table in the config (it has {has})")
    if problems:
        raise ConfigError(config.path, problems)
    return config.model_copy(
        update={
            "models": [m for m in config.models if models is None or m.name in models],
            "targets": {k: v for k, v in config.targets.items() if platforms is None or k in platforms},
        }
    )
