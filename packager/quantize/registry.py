"""Quantization recipes by name, registered with a decorator; a miss lists the valid names."""

from __future__ import annotations

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
    calibration_data: Path | None = None
    """``.npy`` of preprocessed calibration tensors, float32 ``[N, *input_shape[1:]]`` in the model's
    layout and value range; given to recipes that read data (``reads_calibration_data``) whenever the
    config has a ``[models.calibration]`` table, else None."""


@dataclass(frozen=True)
class Recipe:
    name: str
    run: Callable[[QuantizeContext], dict[str, object]]
    """Writes ``ctx.output`` and returns details worth recording in the manifest."""
    needs_calibration: bool
    summary: str
    params: Callable[[ModelSpec], dict[str, object]] = field(default=lambda spec: {})
    """The config fields this recipe reads: part of its cache key, so editing them reruns it."""
    reads_calibration_data: bool = False
    """Uses the calibration tensors when the config has them (e.g. the FP16 range audit), without
    requiring them as ``needs_calibration`` does."""


_RECIPES: dict[str, Recipe] = {}

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
    reads_calibration_data: bool = False,
) -> Callable[
    [Callable[[QuantizeContext], dict[str, object]]], Callable[[QuantizeContext], dict[str, object]]
]:
    def decorate(
        fn: Callable[[QuantizeContext], dict[str, object]],
    ) -> Callable[[QuantizeContext], dict[str, object]]:
        if name in _RECIPES:
            raise ValueError(f"variant {name!r} registered twice")
        _RECIPES[name] = Recipe(
            name, fn, needs_calibration, summary, params or (lambda spec: {}), reads_calibration_data
        )
        return fn

    return decorate


def get(name: str) -> Recipe:
    _load_builtin()
    try:
        return _RECIPES[name]
    except KeyError:
        raise UnknownName("variant", name, list(_RECIPES)) from None


def names() -> list[str]:
    _load_builtin()
    return sorted(_RECIPES)


def _load_builtin() -> None:
    # Importing the recipe modules fills the registry; their heavy imports live inside the functions.
    from packager.quantize import dynamic, fp16, mixed, static_qdq  # noqa: F401
