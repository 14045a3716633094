"""What every platform's generated loader code is made from: the model's preprocessing and its outputs.

:mod:`targets.android.codegen` (Kotlin) and :mod:`targets.ios.codegen` (Swift) describe their packages
with these, and check them with the same rules, so a model's preprocessing constants, output names and
shapes mean the same on both platforms. Nothing here knows a language.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from packager.config import InputSpec, ModelSpec, OutputKind
from packager.preprocess import LETTERBOX_FILL
from packager.results import IOInfo

Layout = Literal["NCHW", "NHWC"]
Channels = Literal["RGB", "BGR", "GRAY"]
ResizeMode = Literal["stretch", "center-crop", "letterbox"]

_RESOURCE = re.compile(r"[\w.-]+(/[\w.-]+)*")


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """``packager.preprocess.to_tensor`` as constants: resize, channel order, (pixel - mean) / std, layout."""

    height: int
    width: int
    resize: ResizeMode = "stretch"
    channels: Channels = "RGB"
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    """One value, or one per channel (in the ``channels`` order)."""
    layout: Layout = "NCHW"
    letterbox_fill: int = LETTERBOX_FILL

    @classmethod
    def from_input_spec(cls, spec: InputSpec) -> Preprocessing:
        return cls(
            height=spec.height,
            width=spec.width,
            resize=spec.resize,
            channels=spec.channels,
            mean=tuple(spec.mean),
            std=tuple(spec.std),
            layout=spec.layout,
        )

    @property
    def num_channels(self) -> int:
        return 1 if self.channels == "GRAY" else 3

    @property
    def shape(self) -> tuple[int, ...]:
        """The tensor with its batch of 1, in ``layout``."""
        c, h, w = self.num_channels, self.height, self.width
        return (1, c, h, w) if self.layout == "NCHW" else (1, h, w, c)

    def per_channel(self, values: tuple[float, ...]) -> tuple[float, ...]:
        """``mean`` or ``std`` with one value per channel (a single value repeated)."""
        return values * self.num_channels if len(values) == 1 else values


@dataclass(frozen=True, kw_only=True)
class OutputInfo:
    """One ONNX output: the name every runtime's loader reports it under, its ONNX shape, its kind."""

    name: str
    shape: tuple[int, ...]
    kind: OutputKind = "generic"
    normalize: Literal["l2", "none"] = "none"


# --- checks shared by the platforms ---------------------------------------------------------------------


def channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``[N, C, *spatial]`` -> ``[N, *spatial, C]``; shapes of rank < 3 are returned as they are."""
    return (shape[0], *shape[2:], shape[1]) if len(shape) >= 3 else shape


def layout_problem(
    actual: tuple[int, ...], onnx: tuple[int, ...], where: str, nchw: bool = True
) -> str | None:
    """None when ``actual`` is the ONNX shape or (for a channels-first ONNX tensor) its channels-last form."""
    if tuple(actual) == tuple(onnx) or (nchw and tuple(actual) == channels_last(tuple(onnx))):
        return None
    return (
        f"{where} shape {list(actual)} is neither {list(onnx)} nor its channels-last form: fix the manifest"
    )


def output_map_problems(
    mapped: list[tuple[str, str, tuple[int, ...]]], outputs: tuple[OutputInfo, ...], where: str
) -> list[str]:
    """A runtime's outputs as (its name, the ONNX output it stands for, its shape): each must stand for a
    known ONNX output, in the ONNX shape or its channels-last form, and each ONNX output once."""
    onnx = {o.name: o for o in outputs}
    problems = []
    for name, onnx_name, shape in mapped:
        if onnx_name not in onnx:
            problems.append(f"{where} output {name!r} maps to unknown ONNX output {onnx_name!r}")
            continue
        problem = layout_problem(shape, onnx[onnx_name].shape, f"{where} output {name!r}")
        problems += [problem] if problem else []
    seen = sorted(onnx_name for _, onnx_name, _ in mapped)
    if seen != sorted(onnx):
        problems.append(f"{where} outputs map to {seen}, the model has {sorted(onnx)}: map each once")
    return problems


def resource_problems(paths: list[str], where: str, root: str, noun: str = "file") -> list[str]:
    """Each of ``paths`` that is not a plain relative path under ``root`` (no ``..``, no absolute path)."""
    return [
        f"{where} {noun} {path!r} must be a relative path under {root}, without '..'"
        for path in paths
        if not _RESOURCE.fullmatch(path) or ".." in path.split("/")
    ]


def preprocessing_problems(pre: Preprocessing, where: str) -> list[str]:
    """Size, mean/std and letterbox fill problems of ``pre``; ``where`` names the model (``models['x']``)."""
    problems = []
    if min(pre.height, pre.width) <= 0:
        problems.append(f"{where}.preprocessing size must be positive")
    for field in ("mean", "std"):
        values = getattr(pre, field)
        if len(values) not in (1, pre.num_channels) or not all(math.isfinite(v) for v in values):
            problems.append(f"{where}.preprocessing.{field} needs 1 or {pre.num_channels} finite values")
    if 0 in pre.std:
        problems.append(f"{where}.preprocessing.std must not contain 0")
    if not 0 <= pre.letterbox_fill <= 255:
        problems.append(f"{where}.preprocessing.letterbox_fill must be a pixel value 0..255")
    return problems


def output_problems(outputs: tuple[OutputInfo, ...], where: str) -> list[str]:
    names = [o.name for o in outputs]
    if not names or len(set(names)) != len(names):
        return [f"{where}.outputs must list each ONNX output once"]
    return []


def model_name_problems(name: str, where: str) -> list[str]:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        return [f"{where}.name must be snake_case (a-z, 0-9, _), starting with a letter"]
    return []


def class_prefix(model_name: str) -> str:
    """``face_det`` -> ``FaceDet``: the UpperCamel prefix of a model's generated types."""
    return "".join(part[:1].upper() + part[1:] for part in model_name.split("_") if part)


def output_infos(spec: ModelSpec, outputs: Sequence[IOInfo]) -> tuple[OutputInfo, ...]:
    """Every ONNX output (the manifest model's ``outputs``, in order) with the kind and normalisation the
    config declares for it (``generic``, no normalisation when undeclared)."""
    declared = spec.declared_by_name([o.name for o in outputs])
    return tuple(
        OutputInfo(
            name=io.name,
            shape=tuple(int(d) for d in io.shape),
            kind=declared[io.name].kind if io.name in declared else "generic",
            normalize=declared[io.name].normalize if io.name in declared else "none",
        )
        for io in outputs
    )
