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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jinja2
import numpy as np

from targets.android.codegen_checks import check
from targets.android.config import _KOTLIN_KEYWORDS, TfliteDelegate
from targets.loaders import OutputInfo, Preprocessing, class_prefix
from targets.ort_mobile.ep_config import SessionPlan, ep_config
from targets.rendering import CodegenError as CodegenError  # re-exported: render_files raises it
from targets.rendering import environment, render, write_tree

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

TensorDtype = Literal["float32", "int8", "uint8"]
_OPT_LEVEL = {"all": "ALL_OPT", "extended": "EXTENDED_OPT", "basic": "BASIC_OPT", "disabled": "NO_OPT"}
"""SessionPlan.graph_optimization_level -> ``OrtSession.SessionOptions.OptLevel`` (ORT Java API)."""


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
        return class_prefix(self.name)


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
    return environment(
        TEMPLATE_KINDS,
        {
            "kstr": kotlin_string,
            "kdoc": lambda text: kotlin_string(text).replace("*/", "*\\/"),
            "kints": kotlin_ints,
        },
    )


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
    base = {"module": module, "namespace": module.namespace or module.package, "models": views}
    return render(_environment(), jobs, base)


def render_module(module: AndroidModule, root: Path) -> list[Path]:
    """Write the module to ``root/<module.module>/`` (sorted, ``\\n`` newlines, no timestamps); the paths."""
    return write_tree(render_files(module), root / module.module)
