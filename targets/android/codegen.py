"""The generated Android library module: Kotlin loaders, preprocessing and Gradle build, from typed data.

The integrator fills :class:`AndroidModule` from the build's manifest, so every asset path, tensor name,
shape, quantization parameter and preprocessing constant in the generated code comes from a field here;
the templates (``templates/kotlin``, ``templates/gradle``) hold only code. :func:`render_module` writes::

    <module>/build.gradle.kts, consumer-rules.pro, README.md, .editorconfig
    <module>/src/main/kotlin/<package path>/*.kt

and the integrator puts the models under ``<module>/src/main/assets/<model>/``. Per model ``Sface``:
``SfaceModel`` (interface + ``SfaceOutputs``), ``SfacePreprocessor`` (``packager.preprocess`` in Kotlin,
cv2-exact on 8-bit pixels), ``SfaceOrt`` and/or ``SfaceTflite``. Shared: ``ImageOps``, ``Tensors``,
``ModelAssets``, ``Backend`` and, with any TFLite model, ``TfliteIo``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jinja2
import numpy as np

from packager.config import InputSpec, OutputKind
from packager.errors import PackagerError
from packager.preprocess import LETTERBOX_FILL
from packager.resources import template_loader
from targets.android.config import _KOTLIN_KEYWORDS, TfliteDelegate
from targets.ort_mobile.ep_config import SessionPlan, ep_config

ORT_ANDROID_VERSION = "1.23.2"
"""``com.microsoft.onnxruntime:onnxruntime-android``: the newest patch of the converter's minor line
(onnxruntime==1.23.0 writes the .ort files; a runtime loads files from an older or equal converter, DESIGN
§5.22). Versions: https://mvnrepository.com/artifact/com.microsoft.onnxruntime/onnxruntime-android (1.23.2,
2025-10-25)."""
LITERT_ANDROID_VERSION = "1.4.1"
"""``com.google.ai.edge.litert:litert`` (+ ``litert-api``, ``litert-gpu``, ``litert-gpu-api``), tag v1.4.1 of
github.com/google-ai-edge/LiteRT (2025-11-19; ci/build_maven_with_docker.sh publishes those four). The 2.x
line that ships with the ai-edge-litert 2.1.0 host interpreter has ``Interpreter`` "CPU only" on Android
(LiteRT RELEASE.md v2.1.0; its Interpreter.Options has no addDelegate), so NNAPI/GPU delegates need 1.4.x;
the .tflite format is the same, and LiteRT 1.4.1's kernels are newer than the TF 2.19 converter's ops."""
MIN_SDK = 24
COMPILE_SDK = 35
TEMPLATE_KINDS = ("kotlin", "gradle")

Layout = Literal["NCHW", "NHWC"]
Channels = Literal["RGB", "BGR", "GRAY"]
ResizeMode = Literal["stretch", "center-crop", "letterbox"]
TensorDtype = Literal["float32", "int8", "uint8"]
_DTYPE_RANGE = {"int8": (-128, 127), "uint8": (0, 255)}
_OPT_LEVEL = {"all": "ALL_OPT", "extended": "EXTENDED_OPT", "basic": "BASIC_OPT", "disabled": "NO_OPT"}
"""SessionPlan.graph_optimization_level -> ``OrtSession.SessionOptions.OptLevel`` (ORT Java API)."""


class CodegenError(PackagerError):
    """The module description cannot become working Kotlin; every problem names its field and fix."""

    def __init__(self, module: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"cannot generate the Android module {module!r}: " + "; ".join(problems))


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


@dataclass(frozen=True, kw_only=True)
class OutputInfo:
    """One ONNX output: the name every runtime's loader reports it under, its ONNX shape, its kind."""

    name: str
    shape: tuple[int, ...]
    kind: OutputKind = "generic"
    normalize: Literal["l2", "none"] = "none"


@dataclass(frozen=True, kw_only=True)
class OrtArtifact:
    """The .ort file and its FP32 fallback (same float I/O), tried with each session plan in order."""

    asset: str
    """Path under ``src/main/assets`` (``sface/int8.ort``)."""
    precision: str
    input_name: str
    input_shape: tuple[int, ...]
    plans: tuple[SessionPlan, ...]
    """From :func:`targets.ort_mobile.ep_config.ep_config`; a plain CPU plan is added last when missing."""
    fallback_asset: str | None = None
    fallback_precision: str = "fp32"


@dataclass(frozen=True, kw_only=True)
class TfliteTensor:
    """A signature tensor as LiteRT reports it; int8/uint8 ones with their per-tensor scale and zero point."""

    name: str
    shape: tuple[int, ...]
    dtype: TensorDtype = "float32"
    scale: float = 0.0
    zero_point: int = 0


@dataclass(frozen=True, kw_only=True)
class TfliteOutput(TfliteTensor):
    onnx_name: str
    """The ONNX output this signature output stands for (matched by name, never by index: DESIGN §5.25)."""


@dataclass(frozen=True, kw_only=True)
class TfliteFile:
    asset: str
    precision: str
    input: TfliteTensor
    outputs: tuple[TfliteOutput, ...]
    signature_key: str = "serving_default"


@dataclass(frozen=True, kw_only=True)
class TfliteArtifact:
    """The .tflite file, the files to fall back on in order (each with its own I/O types), and the
    delegate to try first."""

    primary: TfliteFile
    fallbacks: tuple[TfliteFile, ...] = ()
    delegate: TfliteDelegate = "xnnpack"
    allow_fp16: bool = False
    """GPU ``setPrecisionLossAllowed`` / NNAPI ``setAllowFp16``."""


@dataclass(frozen=True, kw_only=True)
class ModelLoader:
    name: str
    """snake_case model name; classes are named after it (``face_det`` -> ``FaceDetOrt``)."""
    preprocessing: Preprocessing
    outputs: tuple[OutputInfo, ...]
    ort: OrtArtifact | None = None
    tflite: TfliteArtifact | None = None

    @property
    def class_prefix(self) -> str:
        return "".join(part[:1].upper() + part[1:] for part in self.name.split("_") if part)


@dataclass(frozen=True, kw_only=True)
class AndroidModule:
    package: str
    module: str
    models: tuple[ModelLoader, ...]
    namespace: str | None = None
    """Gradle ``namespace``; default ``package``."""
    ort_version: str = ORT_ANDROID_VERSION
    litert_version: str = LITERT_ANDROID_VERSION
    threads: int = 4
    min_sdk: int = MIN_SDK
    compile_sdk: int = COMPILE_SDK

    @property
    def uses_ort(self) -> bool:
        return any(m.ort is not None for m in self.models)

    @property
    def uses_tflite(self) -> bool:
        return any(m.tflite is not None for m in self.models)

    @property
    def uses_gpu(self) -> bool:
        return any(m.tflite is not None and m.tflite.delegate == "gpu" for m in self.models)


# --- checks -----------------------------------------------------------------------------------------------


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], *shape[2:], shape[1]) if len(shape) >= 3 else shape


def _layout_problem(
    actual: tuple[int, ...], onnx: tuple[int, ...], where: str, nchw: bool = True
) -> str | None:
    """None when ``actual`` is the ONNX shape or (for a channels-first ONNX tensor) its channels-last form."""
    if tuple(actual) == tuple(onnx) or (nchw and tuple(actual) == _channels_last(tuple(onnx))):
        return None
    return (
        f"{where} shape {list(actual)} is neither {list(onnx)} nor its channels-last form: fix the manifest"
    )


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
    layout = _layout_problem(file.input.shape, pre.shape, f"{where}.input", pre.layout == "NCHW")
    problems += [layout] if layout else []
    onnx = {o.name: o for o in model.outputs}
    seen = [o.onnx_name for o in file.outputs]
    for out in file.outputs:
        problems += _tensor_problems(out, f"{where} output {out.name!r}")
        if out.onnx_name not in onnx:
            problems.append(f"{where} output {out.name!r} maps to unknown ONNX output {out.onnx_name!r}")
            continue
        shape_problem = _layout_problem(out.shape, onnx[out.onnx_name].shape, f"{where} output {out.name!r}")
        problems += [shape_problem] if shape_problem else []
    if sorted(seen) != sorted(onnx):
        problems.append(f"{where} outputs map to {sorted(seen)}, the model has {sorted(onnx)}: map each once")
    return problems


def _assets(model: ModelLoader) -> list[str]:
    ort = [model.ort.asset, model.ort.fallback_asset] if model.ort else []
    tflite = [model.tflite.primary, *model.tflite.fallbacks] if model.tflite else []
    return [a for a in ort if a] + [f.asset for f in tflite]


def _model_problems(model: ModelLoader) -> list[str]:
    where = f"models[{model.name!r}]"
    pre = model.preprocessing
    problems = [
        f"{where} asset {asset!r} must be a relative path under src/main/assets, without '..'"
        for asset in _assets(model)
        if not re.fullmatch(r"[\w.-]+(/[\w.-]+)*", asset) or ".." in asset.split("/")
    ]
    if not re.fullmatch(r"[a-z][a-z0-9_]*", model.name):
        problems.append(f"{where}.name must be snake_case (a-z, 0-9, _), starting with a letter")
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
    names = [o.name for o in model.outputs]
    if not names or len(set(names)) != len(names):
        problems.append(f"{where}.outputs must list each ONNX output once")
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
        raise CodegenError(module.module, problems)


# --- Kotlin literals and names ----------------------------------------------------------------------------


def kotlin_string(text: str) -> str:
    """A Kotlin string literal: JSON escapes plus ``$`` (string templates)."""
    return json.dumps(text, ensure_ascii=False).replace("$", "\\$")


def kotlin_float(value: float) -> str:
    """The float32 the Python side computes with (``np.float32(value)``), as its shortest Kotlin literal."""
    text = str(np.float32(value))
    return f"{text}f"


def kotlin_ints(values: tuple[int, ...]) -> str:
    return "intArrayOf(" + ", ".join(str(int(v)) for v in values) + ")"


def kotlin_name(name: str, taken: set[str]) -> str:
    """A lowerCamel property name for an ONNX output name, unique within ``taken`` (which it extends)."""
    words = re.findall(r"[A-Za-z0-9]+", name)
    base = "".join(w[:1].upper() + w[1:] for w in words)
    base = base[:1].lower() + base[1:] if base else "output"
    if base[0].isdigit() or base in _KOTLIN_KEYWORDS:
        base = f"output{base[:1].upper()}{base[1:]}"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}{n}", n + 1
    taken.add(candidate)
    return candidate


# --- views: what the templates read ------------------------------------------------------------------------


def _expand(values: tuple[float, ...], channels: int) -> list[str]:
    return [kotlin_float(v) for v in (values * channels if len(values) == 1 else values)]


def _ort_view(module: AndroidModule, ort: OrtArtifact) -> dict[str, object]:
    plans = list(ort.plans)
    if not any(p.ep == "cpu" for p in plans):
        plans += ep_config(["cpu"], threads=module.threads).plans
    files = [(ort.asset, ort.precision)]
    if ort.fallback_asset is not None:
        files.append((ort.fallback_asset, ort.fallback_precision))
    return {
        "files": files,
        "input_name": ort.input_name,
        "input_shape": ort.input_shape,
        "plans": [
            {
                "ep": p.ep,
                "intra": p.intra_op_num_threads,
                "inter": p.inter_op_num_threads,
                "opt_level": _OPT_LEVEL[p.graph_optimization_level],
                "entries": sorted(p.config_entries.items()),
                "providers": [
                    {"name": pr.name, "options": sorted(pr.options.items()), "flags": list(pr.flags)}
                    for pr in p.providers
                ],
            }
            for p in plans
        ],
        "nnapi": any(pr.name == "NNAPI" for p in plans for pr in p.providers),
    }


def _tensor_view(t: TfliteTensor, onnx_shape: tuple[int, ...]) -> dict[str, object]:
    return {
        "name": t.name,
        "onnx_name": t.onnx_name if isinstance(t, TfliteOutput) else t.name,
        "dtype": t.dtype.upper(),
        "shape": tuple(t.shape),
        "scale": kotlin_float(t.scale),
        "zero_point": t.zero_point,
        "channels_last": tuple(t.shape) != tuple(onnx_shape),
    }


def _tflite_view(model: ModelLoader, tflite: TfliteArtifact) -> dict[str, object]:
    onnx = {o.name: o.shape for o in model.outputs}
    files = [tflite.primary, *tflite.fallbacks]
    accelerators = list(dict.fromkeys([tflite.delegate, "xnnpack", "cpu"]))
    return {
        "files": [
            {
                "asset": f.asset,
                "precision": f.precision,
                "signature_key": f.signature_key,
                "input": _tensor_view(f.input, model.preprocessing.shape),
                "outputs": [
                    _tensor_view(o, onnx[o.onnx_name]) for o in sorted(f.outputs, key=lambda o: o.name)
                ],
            }
            for f in files
        ],
        "accelerators": accelerators,
        "allow_fp16": tflite.allow_fp16,
    }


def _model_view(module: AndroidModule, model: ModelLoader) -> dict[str, object]:
    pre = model.preprocessing
    taken: set[str] = set()
    return {
        "name": model.name,
        "prefix": model.class_prefix,
        "pre": {
            "p": pre,
            "shape": pre.shape,
            "mean": _expand(pre.mean, pre.num_channels),
            "std": _expand(pre.std, pre.num_channels),
        },
        "outputs": [
            {"o": o, "prop": kotlin_name(o.name, taken), "l2": o.normalize == "l2"} for o in model.outputs
        ],
        "ort": _ort_view(module, model.ort) if model.ort else None,
        "tflite": _tflite_view(model, model.tflite) if model.tflite else None,
    }


# --- rendering ---------------------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PrefixLoader({kind: template_loader(kind) for kind in TEMPLATE_KINDS}),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["kstr"] = kotlin_string
    env.filters["kdoc"] = lambda text: kotlin_string(text).replace("*/", "*\\/")
    env.filters["kints"] = kotlin_ints
    return env


SHARED_FILES = {
    "build.gradle.kts": "gradle/build.gradle.kts.j2",
    "consumer-rules.pro": "gradle/consumer-rules.pro.j2",
    "README.md": "gradle/README.md.j2",
    ".editorconfig": "gradle/editorconfig.j2",
    "{src}/Backend.kt": "kotlin/Backend.kt.j2",
    "{src}/ImageOps.kt": "kotlin/ImageOps.kt.j2",
    "{src}/ModelAssets.kt": "kotlin/ModelAssets.kt.j2",
    "{src}/Tensors.kt": "kotlin/Tensors.kt.j2",
}
"""Output path (``{src}`` = the Kotlin package folder) -> template, once per module."""


def render_files(module: AndroidModule) -> dict[str, str]:
    """Relative path -> text of every generated file, sorted by path, after :func:`check`; writes nothing."""
    check(module)
    src = "src/main/kotlin/" + module.package.replace(".", "/")
    views = [_model_view(module, m) for m in module.models]
    jobs = [(path.format(src=src), template, None) for path, template in SHARED_FILES.items()]
    if module.uses_tflite:
        jobs.append((f"{src}/TfliteIo.kt", "kotlin/TfliteIo.kt.j2", None))
    for model, view in zip(module.models, views, strict=True):
        name = f"{src}/{model.class_prefix}"
        jobs += [(f"{name}Model.kt", "kotlin/Model.kt.j2", view)]
        jobs += [(f"{name}Preprocessor.kt", "kotlin/Preprocessor.kt.j2", view)]
        jobs += [(f"{name}Ort.kt", "kotlin/OrtLoader.kt.j2", view)] if model.ort else []
        jobs += [(f"{name}Tflite.kt", "kotlin/TfliteLoader.kt.j2", view)] if model.tflite else []
    env = _environment()
    base = {"module": module, "namespace": module.namespace or module.package, "models": views}
    rendered = {}
    for path, template, view in sorted(jobs, key=lambda job: job[0]):
        rendered[path] = env.get_template(template).render(**base, m=view).rstrip("\n") + "\n"
    return rendered


def render_module(module: AndroidModule, root: Path) -> list[Path]:
    """Write the module to ``root/<module.module>/`` (sorted, ``\\n`` newlines, no timestamps); the paths."""
    folder = root / module.module
    written = []
    for rel, text in render_files(module).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        written.append(path)
    return written
