"""Quantization recipes by name; a miss lists the valid names.

The built-in recipes are declared in :data:`BUILTIN` with their bodies named by module and function
(:class:`Entry`) and imported on first call: the plan reads names, ``needs_calibration`` and
``params`` on every build, and a no-op rebuild must not import onnx and the recipes' tools (issue 11:
no-op <= 0.6 s). Other recipes register with the :func:`register` decorator.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from packager.errors import UnknownName

if TYPE_CHECKING:
    from packager.config import ModelSpec


@dataclass(frozen=True)
class QuantizeContext:
    """Everything a recipe may read. Recipes write exactly one file: ``output``."""

    spec: ModelSpec
    reference: Path
    """The prepared FP32 model (cleaned, batch fixed to 1, opset upgraded when needed)."""
    output: Path
    work_dir: Path
    calibrated: Path | None = None
    """The shared calibration step's folder (read with ``Calibrated``); None unless the recipe needs it."""
    decision: Path | None = None
    """The JSON its :class:`Recipe` ``analysis`` wrote, when the recipe has one and the config has a
    ``[models.calibration]`` table; else None."""


DECISION_FILE = "decision.json"
"""What an analysis step writes for its recipe."""


@dataclass(frozen=True)
class AnalysisContext:
    """What a recipe's analysis reads and writes (it runs as its own step, before the recipe)."""

    spec: ModelSpec
    reference: Path
    """The prepared FP32 model."""
    calibration_data: Path
    """``.npy`` of preprocessed calibration tensors, float32 ``[N, *input_shape[1:]]`` in the model's
    layout and value range."""
    decision: Path
    """Where to write the decision the recipe reads (JSON)."""
    work_dir: Path


@dataclass(frozen=True)
class Recipe:
    name: str
    run: Callable[[QuantizeContext], dict[str, object]]
    """Writes ``ctx.output`` and returns details worth recording in the manifest."""
    needs_calibration: bool
    summary: str
    params: Callable[[ModelSpec], dict[str, object]] = field(default=lambda spec: {})
    """The config fields this recipe reads: part of its cache key, so editing them reruns it."""
    analysis: Callable[[AnalysisContext], dict[str, object]] | None = None
    """A look at the calibration tensors (when the config has them) that the recipe's output depends
    on without requiring them as ``needs_calibration`` does (the FP16 range audit). It runs as its own
    step and writes a small decision for the recipe to read, and returns its record (merged into the
    variant's details): new calibration images rerun the analysis, and the recipe and all that is
    made from its model only when the decision changes (issue 11: exact invalidation)."""


@dataclass(frozen=True)
class Entry:
    """A recipe function named by its module and attribute, imported when first called."""

    module: str
    function: str

    def __call__(self, ctx: QuantizeContext | AnalysisContext) -> dict[str, object]:
        found: Callable[[QuantizeContext | AnalysisContext], dict[str, object]] = getattr(
            importlib.import_module(self.module), self.function
        )
        return found(ctx)


def _mixed_params(spec: ModelSpec) -> dict[str, object]:
    return {"mixed": spec.mixed.model_dump(mode="json")}


BUILTIN = (
    Recipe(
        "int8-dynamic",
        Entry("packager.quantize.dynamic", "quantize_dynamic_int8"),
        needs_calibration=False,
        summary="INT8 weights, activations quantized at run time",
    ),
    Recipe(
        "int8-qdq",
        Entry("packager.quantize.static_qdq", "quantize_static_qdq"),
        needs_calibration=True,
        summary="static INT8 (QDQ), calibrated on real images",
    ),
    Recipe(
        "fp16",
        Entry("packager.quantize.fp16", "convert_fp16"),
        needs_calibration=False,
        summary="FP16 weights and compute; float32 I/O",
        analysis=Entry("packager.quantize.fp16", "analyze_fp16_ranges"),
    ),
    Recipe(
        "mixed",
        Entry("packager.quantize.mixed", "quantize_mixed"),
        needs_calibration=True,
        summary="static INT8 (QDQ) with the most sensitive nodes kept in float",
        params=_mixed_params,
    ),
)

_RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in BUILTIN}

PRECISIONS: dict[str, str] = {
    "fp32": "fp32",
    "fp16": "fp16",
    "int8-dynamic": "int8 weights, float activations",
    "int8-qdq": "int8",
    "mixed": "int8 + float",
}
"""What an artifact computes in, by variant: the manifest's ``precision`` field."""


def precision_of(variant: str) -> str:
    return PRECISIONS.get(variant, variant)


def register(
    name: str,
    *,
    needs_calibration: bool,
    summary: str,
    params: Callable[[ModelSpec], dict[str, object]] | None = None,
    analysis: Callable[[AnalysisContext], dict[str, object]] | None = None,
) -> Callable[
    [Callable[[QuantizeContext], dict[str, object]]], Callable[[QuantizeContext], dict[str, object]]
]:
    def decorate(
        fn: Callable[[QuantizeContext], dict[str, object]],
    ) -> Callable[[QuantizeContext], dict[str, object]]:
        if name in _RECIPES:
            raise ValueError(f"variant {name!r} registered twice")
        _RECIPES[name] = Recipe(name, fn, needs_calibration, summary, params or (lambda spec: {}), analysis)
        return fn

    return decorate


def get(name: str) -> Recipe:
    try:
        return _RECIPES[name]
    except KeyError:
        raise UnknownName("variant", name, list(_RECIPES)) from None


def names() -> list[str]:
    return sorted(_RECIPES)
