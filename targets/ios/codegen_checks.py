"""The checks of an :class:`~targets.ios.codegen.IosPackage`: every problem of the description at once,
before anything is rendered, and the facts of the platform they check against (the oldest iOS, Swift's
reserved words, the execution providers on iOS).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from targets.ios.config import SHARED_TYPES, SWIFT_RESERVED
from targets.loaders import (
    layout_problem,
    model_name_problems,
    output_map_problems,
    output_problems,
    preprocessing_problems,
    resource_problems,
)
from targets.ort_mobile.ort_format import parse_version
from targets.rendering import CodegenError

if TYPE_CHECKING:
    from targets.ios.codegen import CoreMLArtifact, IosPackage, ModelLoader, OrtArtifact

MIN_IOS = "15.0"
"""ML Programs and the ``.copy`` resource rule both need iOS 15 (coremltools: ``convert_to="mlprogram"``)."""
ORT_MODULE = "OnnxRuntimeBindings"
"""The onnxruntime Swift package's library product and the module it gives Swift (its Package.swift:
product ``onnxruntime`` -> target ``OnnxRuntimeBindings``; CocoaPods users import ``onnxruntime_objc``)."""
RESOURCES = "Resources"
"""The copied folder of ``Sources/<Module>/``; resource paths in the description are relative to it."""
_IOS_PROVIDERS = ("CoreML",)
COREML_CACHE_OPTION = "ModelCacheDirectory"
"""The CoreML EP option naming its compiled-model cache (ORT >= 1.21, DESIGN §5.23): a folder on the
device, so the loader sets it, never the description."""
SWIFT_KEYWORDS = SWIFT_RESERVED | {"Type", "Protocol", "_"}
"""Swift's reserved words (with the system modules :data:`targets.ios.config.SWIFT_RESERVED` adds), and
``Type`` and ``Protocol``, reserved after a dot."""
_IMPORTED = frozenset({"Swift", "Foundation", "CoreML", "CoreGraphics", "CoreVideo", ORT_MODULE})


def _version(text: str) -> tuple[int, ...] | None:
    return tuple(int(p) for p in text.split(".")) if re.fullmatch(r"\d+(\.\d+){0,2}", text) else None


def _module_problems(package: IosPackage) -> list[str]:
    module = package.module
    problems = []
    if not re.fullmatch(r"[A-Z][A-Za-z0-9_]*", module):
        problems.append(
            f"module {module!r} is not an UpperCamelCase Swift identifier (letters, digits, _: FaceID)"
        )
    elif module in SWIFT_KEYWORDS | _IMPORTED:
        problems.append(f"module {module!r} is a Swift keyword or the name of a module it imports: rename it")
    types = [*SHARED_TYPES, *(t for m in package.models for t in m.type_names)]
    if module in types:
        problems.append(f"module {module!r} is also the name of a generated type: rename the module")
    version = _version(package.deployment_target)
    if version is None or version < _version(MIN_IOS):  # type: ignore[operator]
        problems.append(
            f"deployment_target {package.deployment_target!r} must be an iOS version >= {MIN_IOS} "
            "(ML Programs need iOS 15)"
        )
    pin = package.ort_package
    if (pin.exact is None) == (pin.revision is None):
        problems.append("ort_package needs exactly one of exact (a release) and revision (a commit)")
    try:
        parse_version(pin.version)
    except ValueError:
        problems.append(f"ort_package.version {pin.version!r} is not an onnxruntime version like 1.24.2")
    if pin.revision is not None and not re.fullmatch(r"[0-9a-f]{40}", pin.revision):
        problems.append(f"ort_package.revision {pin.revision!r} must be a full 40-hex commit")
    if not package.bundle_version.strip():
        problems.append("bundle_version is empty: give the bundle's version and content hash")
    return problems


def _ort_problems(model: ModelLoader, ort: OrtArtifact, where: str) -> list[str]:
    problems = []
    if tuple(ort.input_shape) != model.preprocessing.shape:
        problems.append(
            f"{where}.ort.input_shape {list(ort.input_shape)} != preprocessing {model.preprocessing.shape}"
        )
    for resource in (ort.resource, ort.fallback_resource):
        if resource is not None and not resource.endswith(".ort"):
            problems.append(f"{where}.ort file {resource!r} is not an .ort file")
    for plan in ort.plans:
        for provider in plan.providers:
            if provider.name not in _IOS_PROVIDERS:
                problems.append(
                    f"{where}.ort plan {plan.ep!r} appends {provider.name}, not on iOS: drop it from ort_eps"
                )
            elif COREML_CACHE_OPTION in provider.options:
                problems.append(
                    f"{where}.ort plan {plan.ep!r} sets {COREML_CACHE_OPTION}: drop it, the loader sets a "
                    "caches folder on the device"
                )
    return problems


def _coreml_problems(model: ModelLoader, coreml: CoreMLArtifact, where: str) -> list[str]:
    pre = model.preprocessing
    problems = [
        f"{where}.coreml file {f.resource!r} is not an .mlpackage"
        for f in coreml.files
        if not f.resource.endswith(".mlpackage")
    ]
    layout = layout_problem(coreml.input_shape, pre.shape, f"{where}.coreml input", pre.layout == "NCHW")
    problems += [layout] if layout else []
    mapped = [(o.name, o.onnx_name, tuple(o.shape)) for o in coreml.outputs]
    problems += output_map_problems(mapped, model.outputs, f"{where}.coreml")
    names = [o.name for o in coreml.outputs]
    if len(set(names)) != len(names):
        problems.append(f"{where}.coreml outputs name a Core ML output twice")
    return problems


def _resources(model: ModelLoader) -> list[str]:
    ort = [model.ort.resource, model.ort.fallback_resource] if model.ort else []
    coreml = [f.resource for f in model.coreml.files] if model.coreml else []
    return [r for r in ort if r] + coreml


def _model_problems(model: ModelLoader) -> list[str]:
    where = f"models[{model.name!r}]"
    resources = _resources(model)
    problems = resource_problems(resources, where, f"Sources/<Module>/{RESOURCES}")
    if len(set(resources)) != len(resources):
        problems.append(f"{where} lists a file twice: {sorted(resources)}")
    problems += model_name_problems(model.name, where)
    problems += preprocessing_problems(model.preprocessing, where)
    problems += output_problems(model.outputs, where)
    if model.ort is None and model.coreml is None:
        problems.append(f"{where} has neither an ort nor a coreml artifact: give at least one")
    if model.ort is not None:
        problems += _ort_problems(model, model.ort, where)
    if model.coreml is not None:
        problems += _coreml_problems(model, model.coreml, where)
    return problems


def check(package: IosPackage) -> None:
    """Every problem of the description at once (:class:`CodegenError`), or nothing."""
    problems = _module_problems(package)
    problems += [p for model in package.models for p in _model_problems(model)]
    types = [t for m in package.models for t in m.type_names]
    if len(set(types)) != len(types) or set(types) & set(SHARED_TYPES):
        problems.append(f"model names give the same type names ({[m.class_prefix for m in package.models]})")
    if not package.models:
        problems.append("no models: give at least one")
    if package.threads < 1:
        problems.append("threads must be >= 1")
    if problems:
        raise CodegenError(f"the Swift package {package.module!r}", problems)
