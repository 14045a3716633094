"""The checks of an :class:`~targets.android.codegen.AndroidModule`: every problem of the description at
once, before anything is rendered.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from targets.loaders import (
    layout_problem,
    model_name_problems,
    output_map_problems,
    output_problems,
    preprocessing_problems,
    resource_problems,
)
from targets.rendering import CodegenError

if TYPE_CHECKING:
    from targets.android.codegen import AndroidModule, ModelLoader, TfliteFile, TfliteTensor

_DTYPE_RANGE = {"int8": (-128, 127), "uint8": (0, 255)}


def _tensor_problems(t: TfliteTensor, where: str) -> list[str]:
    if t.dtype == "float32":
        return []
    low, high = _DTYPE_RANGE[t.dtype]
    problems = []
    if not (math.isfinite(t.scale) and t.scale > 0):
        problems.append(f"{where} is {t.dtype} with scale {t.scale}: give its per-tensor scale (> 0)")
    if not low <= t.zero_point <= high:
        problems.append(f"{where} zero_point {t.zero_point} is outside {t.dtype}")
    return problems


def _tflite_problems(model: ModelLoader, file: TfliteFile, where: str) -> list[str]:
    problems = _tensor_problems(file.input, f"{where}.input")
    pre = model.preprocessing
    layout = layout_problem(file.input.shape, pre.shape, f"{where}.input", pre.layout == "NCHW")
    problems += [layout] if layout else []
    for out in file.outputs:
        problems += _tensor_problems(out, f"{where} output {out.name!r}")
    mapped = [(o.name, o.onnx_name, tuple(o.shape)) for o in file.outputs]
    return problems + output_map_problems(mapped, model.outputs, where)


def _assets(model: ModelLoader) -> list[str]:
    ort = [model.ort.asset, model.ort.fallback_asset] if model.ort else []
    tflite = [model.tflite.primary, *model.tflite.fallbacks] if model.tflite else []
    return [a for a in ort if a] + [f.asset for f in tflite]


def _model_problems(model: ModelLoader) -> list[str]:
    where = f"models[{model.name!r}]"
    pre = model.preprocessing
    problems = resource_problems(_assets(model), where, "src/main/assets", "asset")
    problems += model_name_problems(model.name, where)
    problems += preprocessing_problems(pre, where)
    problems += output_problems(model.outputs, where)
    if model.ort is None and model.tflite is None:
        problems.append(f"{where} has neither an ort nor a tflite artifact: give at least one")
    if model.ort is not None:
        if tuple(model.ort.input_shape) != pre.shape:
            problems.append(
                f"{where}.ort.input_shape {list(model.ort.input_shape)} != preprocessing {pre.shape}"
            )
        for plan in model.ort.plans:
            problems += [
                f"{where}.ort plan {plan.ep!r} appends {p.name}, not on Android: drop {plan.ep} from ort_eps"
                for p in plan.providers
                if p.name not in ("XNNPACK", "NNAPI")
            ]
    if model.tflite is not None:
        problems += _tflite_problems(model, model.tflite.primary, f"{where}.tflite.primary")
        for i, fallback in enumerate(model.tflite.fallbacks):
            problems += _tflite_problems(model, fallback, f"{where}.tflite.fallbacks[{i}]")
    return problems


def check(module: AndroidModule) -> None:
    """Every problem of the description at once (:class:`CodegenError`), or nothing."""
    problems = [p for model in module.models for p in _model_problems(model)]
    prefixes = [m.class_prefix for m in module.models]
    if len(set(prefixes)) != len(prefixes):
        problems.append(f"model names give the same class names ({prefixes}): rename one")
    if not module.models:
        problems.append("no models: give at least one")
    if module.threads < 1:
        problems.append("threads must be >= 1")
    if problems:
        raise CodegenError(f"the Android module {module.module!r}", problems)
