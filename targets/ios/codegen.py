"""The generated Swift package: Swift loaders, preprocessing and Package.swift, from typed data.

The integrator fills :class:`IosPackage` from the build's manifest, so every resource path, tensor name,
shape and preprocessing constant in the generated code comes from a field here; the templates
(``templates/swift``, ``templates/spm``) hold only code. :func:`render_package` writes::

    <Module>/Package.swift, README.md
    <Module>/Sources/<Module>/*.swift

and the integrator puts the models under ``<Module>/Sources/<Module>/Resources/<model>/`` (copied into the
package's resource bundle as they are, ``.copy("Resources")``). Per model ``face_embedder``:
``FaceEmbedderPreprocessor`` (``packager.preprocess`` in Swift over 8-bit pixels, cv2-exact, no imports)
with its ``CGImage``/``CVPixelBuffer`` front-ends (``FaceEmbedderPreprocessor+Images.swift``),
``FaceEmbedderOutputs``, the ``FaceEmbedderModel`` protocol, and ``FaceEmbedderOrt`` and/or
``FaceEmbedderCoreML``. Shared: ``Backend``, ``ModelError``, ``PixelImage``, ``ImageOps``, ``Tensors``,
``ModelResources``, ``ImageSources`` and, as the runtimes need them, ``OrtSupport`` and ``CoreMLSupport``.
The pure files (preprocessing, outputs, tensors, errors) run on any Swift with Foundation, which is how
the tests compare them with Python.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from targets.ios.codegen_checks import (
    COREML_CACHE_OPTION,
    MIN_IOS,
    ORT_MODULE,
    RESOURCES,
    SWIFT_KEYWORDS,
    check,
)
from targets.loaders import OutputInfo, Preprocessing, class_prefix
from targets.ort_mobile.ep_config import CoreMLUnits, SessionPlan, ep_config
from targets.ort_mobile.ort_format import IOS_SWIFT_PACKAGE, RuntimePin, parse_version
from targets.rendering import CodegenError as CodegenError  # re-exported: render_files raises it
from targets.rendering import environment, render, write_tree

TEMPLATE_KINDS = ("swift", "spm")
SWIFT_TOOLS_VERSION = "5.9"
"""Package.swift's ``swift-tools-version``: Xcode 15 and later; the onnxruntime package declares the same."""
MACOS_VERSION = "14.0"
"""The onnxruntime Swift package's own macOS minimum: declared so the package also builds for a Mac
(``swift build``, unit tests); an iOS app ignores it."""
ORT_PRODUCT = "onnxruntime"
"""The onnxruntime Swift package's library product; :data:`ORT_MODULE` is the module it gives Swift."""
COREML_V2_SINCE = (1, 24, 1)
"""``appendCoreMLExecutionProviderWithOptionsV2`` is in the Swift package's Objective-C sources from tag
1.24.1; older revisions (the 1.23.0 one) have the generic ``appendExecutionProvider("CoreML", ...)``, which
V2 forwards to (ort_coreml_execution_provider.mm), so the generated code uses that there."""
_OPT_LEVEL = {"all": ".all", "extended": ".extended", "basic": ".basic", "disabled": ".none"}
"""SessionPlan.graph_optimization_level -> ``ORTGraphOptimizationLevel`` (ort_enums.h as Swift imports it).
The Objective-C API has no inter-op thread setter: sessions run sequentially, with no inter-op pool."""


@dataclass(frozen=True, kw_only=True)
class SwiftPackagePin:
    """The onnxruntime Swift package as Package.swift names it: an exact release or a git revision."""

    url: str
    version: str
    """The onnxruntime version the package carries (at least the converter's, DESIGN §5.22)."""
    exact: str | None = None
    revision: str | None = None

    @classmethod
    def from_runtime_pin(cls, pin: RuntimePin) -> SwiftPackagePin:
        """``reference`` is a 40-hex commit (``revision:``) or a tag (``exact:``)."""
        if re.fullmatch(r"[0-9a-f]{40}", pin.reference):
            return cls(url=pin.package, version=pin.version, revision=pin.reference)
        return cls(url=pin.package, version=pin.version, exact=pin.reference)

    @property
    def package_name(self) -> str:
        """SwiftPM's identity of the package: the URL's last path component without ``.git``."""
        return self.url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")

    @property
    def has_coreml_v2(self) -> bool:
        return parse_version(self.version)[:3] >= COREML_V2_SINCE


ORT_PACKAGE = SwiftPackagePin.from_runtime_pin(IOS_SWIFT_PACKAGE)


@dataclass(frozen=True, kw_only=True)
class OrtArtifact:
    """The .ort file and its FP32 fallback (same float I/O), tried with each session plan in order."""

    resource: str
    """Path under ``Sources/<Module>/Resources`` (``face_embedder/fp16.ort``)."""
    precision: str
    input_name: str
    input_shape: tuple[int, ...]
    plans: tuple[SessionPlan, ...]
    """From :func:`targets.ort_mobile.ep_config.ep_config` (CoreML EP options without
    ``ModelCacheDirectory``: the loader fills it with a caches folder); a plain CPU plan is added last
    when missing."""
    fallback_resource: str | None = None
    fallback_precision: str = "fp32"


@dataclass(frozen=True, kw_only=True)
class CoreMLFile:
    resource: str
    """Path under ``Sources/<Module>/Resources`` (``face_embedder/fp16.mlpackage``)."""
    precision: str


@dataclass(frozen=True, kw_only=True)
class CoreMLOutput:
    name: str
    """The Core ML output's name (coremltools keeps the SavedModel signature's names)."""
    onnx_name: str
    """The ONNX output it stands for (matched by name, never by position: DESIGN §5.25)."""
    shape: tuple[int, ...]
    """The ONNX shape or its channels-last form (then transposed back by the loader)."""


@dataclass(frozen=True, kw_only=True)
class CoreMLArtifact:
    """The .mlpackage files tried in order (``resource`` first, then ``fallbacks``), all converted from
    one SavedModel and so with the same inputs and outputs, and the compute units to ask for first."""

    resource: str
    precision: str
    input_name: str
    input_shape: tuple[int, ...]
    """The preprocessing shape or its channels-last form (the loader transposes the tensor)."""
    outputs: tuple[CoreMLOutput, ...]
    fallbacks: tuple[CoreMLFile, ...] = ()
    compute_units: CoreMLUnits = "ALL"
    """``MLModelConfiguration.computeUnits``; ``CPUOnly`` is tried after it when it fails."""

    @property
    def files(self) -> tuple[CoreMLFile, ...]:
        return (CoreMLFile(resource=self.resource, precision=self.precision), *self.fallbacks)


@dataclass(frozen=True, kw_only=True)
class ModelLoader:
    name: str
    """snake_case model name; types are named after it (``face_det`` -> ``FaceDetOrt``)."""
    preprocessing: Preprocessing
    outputs: tuple[OutputInfo, ...]
    ort: OrtArtifact | None = None
    coreml: CoreMLArtifact | None = None

    @property
    def class_prefix(self) -> str:
        return class_prefix(self.name)

    @property
    def type_names(self) -> tuple[str, ...]:
        p = self.class_prefix
        runtimes = (["Ort"] if self.ort else []) + (["CoreML"] if self.coreml else [])
        return tuple(p + suffix for suffix in ("Preprocessor", "Outputs", "Model", *runtimes))


@dataclass(frozen=True, kw_only=True)
class IosPackage:
    module: str
    """Swift package, library product, target and module name (``FaceID``)."""
    models: tuple[ModelLoader, ...]
    bundle_version: str
    """The release bundle's identity (its version and content hash, from the manifest). It keys the
    compiled Core ML models and the CoreML EP caches on the device, so a new bundle recompiles."""
    deployment_target: str = MIN_IOS
    threads: int = 4
    """Intra-op threads of the CPU plan added to an ORT plan list that has none."""
    ort_package: SwiftPackagePin = ORT_PACKAGE

    @property
    def uses_ort(self) -> bool:
        return any(m.ort is not None for m in self.models)

    @property
    def uses_coreml(self) -> bool:
        return any(m.coreml is not None for m in self.models)


# --- Swift literals and names ------------------------------------------------------------------------------

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def swift_string(text: str) -> str:
    """A Swift string literal (``\\(`` cannot start an interpolation: the backslash is escaped)."""
    body = "".join(
        _ESCAPES.get(ch) or (f"\\u{{{ord(ch):x}}}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch)
        for ch in text
    )
    return f'"{body}"'


def swift_float(value: float) -> str:
    """The float32 the Python side computes with (``np.float32(value)``) as a Swift ``Float`` literal.

    Swift reads a float literal into Float80 (x86) or Double (arm64) and rounds that to Float; the shortest
    decimal is used when both roundings give the float32 back, else the exact hexadecimal literal.
    """
    f = np.float32(value)
    text = str(f)
    if np.float32(np.float64(text)) == f and np.float32(np.longdouble(text)) == f:
        return text
    return float(f).hex()


def swift_name(name: str, taken: set[str]) -> str:
    """A lowerCamel property name for an ONNX output name, unique within ``taken`` (which it extends)."""
    words = re.findall(r"[A-Za-z0-9]+", name)
    base = "".join(w[:1].upper() + w[1:] for w in words)
    base = base[:1].lower() + base[1:] if base else "output"
    if base[0].isdigit() or base in SWIFT_KEYWORDS:
        base = f"output{base[:1].upper()}{base[1:]}"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}{n}", n + 1
    taken.add(candidate)
    return candidate


def cache_key(bundle_version: str, resource: str) -> str:
    """Names a file's compiled form on the device: 16 hex of sha256(bundle version, resource)."""
    return hashlib.sha256(f"{bundle_version}\0{resource}".encode()).hexdigest()[:16]


def cache_name(resource: str) -> str:
    """``face_embedder/fp16.ort`` -> ``face_embedder.fp16.ort``: a file name for the resource's caches."""
    return resource.replace("/", ".")


# --- views: what the templates read ------------------------------------------------------------------------


def _file_view(package: IosPackage, resource: str, precision: str) -> dict[str, str]:
    return {
        "resource": resource,
        "precision": precision,
        "cache_name": cache_name(resource),
        "cache_key": cache_key(package.bundle_version, resource),
    }


def _ort_view(package: IosPackage, ort: OrtArtifact) -> dict[str, object]:
    plans = list(ort.plans)
    if not any(p.ep == "cpu" for p in plans):
        plans += ep_config(["cpu"], threads=package.threads).plans
    files = [_file_view(package, ort.resource, ort.precision)]
    if ort.fallback_resource is not None:
        files.append(_file_view(package, ort.fallback_resource, ort.fallback_precision))
    return {
        "files": files,
        "input_name": ort.input_name,
        "input_shape": tuple(ort.input_shape),
        "plans": [
            {
                "ep": p.ep,
                "intra": p.intra_op_num_threads,
                "opt_level": _OPT_LEVEL[p.graph_optimization_level],
                "entries": sorted(p.config_entries.items()),
                "coreml": [sorted(pr.options.items()) for pr in p.providers if pr.name == "CoreML"],
            }
            for p in plans
        ],
        "coreml_v2": package.ort_package.has_coreml_v2,
    }


def _coreml_view(package: IosPackage, model: ModelLoader, coreml: CoreMLArtifact) -> dict[str, object]:
    onnx = {o.name: o.shape for o in model.outputs}
    return {
        "files": [_file_view(package, f.resource, f.precision) for f in coreml.files],
        "input_name": coreml.input_name,
        "input_shape": tuple(coreml.input_shape),
        "input_channels_last": tuple(coreml.input_shape) != model.preprocessing.shape,
        "outputs": [
            {
                "name": o.name,
                "onnx_name": o.onnx_name,
                "shape": tuple(o.shape),
                "channels_last": tuple(o.shape) != tuple(onnx[o.onnx_name]),
            }
            for o in sorted(coreml.outputs, key=lambda o: o.name)
        ],
        "compute_units": list(dict.fromkeys([coreml.compute_units, "CPUOnly"])),
    }


def _model_view(package: IosPackage, model: ModelLoader) -> dict[str, object]:
    pre = model.preprocessing
    taken: set[str] = {"names", "shapes"}
    return {
        "name": model.name,
        "prefix": model.class_prefix,
        "pre": {
            "p": pre,
            "shape": pre.shape,
            "count": int(np.prod(pre.shape)),
            "mean": [swift_float(v) for v in pre.per_channel(pre.mean)],
            "std": [swift_float(v) for v in pre.per_channel(pre.std)],
        },
        "outputs": [
            {
                "o": o,
                "prop": swift_name(o.name, taken),
                "l2": o.normalize == "l2",
                "count": int(np.prod(o.shape)),
            }
            for o in model.outputs
        ],
        "ort": _ort_view(package, model.ort) if model.ort else None,
        "coreml": _coreml_view(package, model, model.coreml) if model.coreml else None,
    }


# --- rendering ---------------------------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    return environment(
        TEMPLATE_KINDS,
        {"sstr": swift_string, "sints": lambda values: "[" + ", ".join(str(int(v)) for v in values) + "]"},
    )


SHARED_FILES = {
    "Package.swift": "spm/Package.swift.j2",
    "README.md": "spm/README.md.j2",
    "{src}/Backend.swift": "swift/Backend.swift.j2",
    "{src}/ModelError.swift": "swift/ModelError.swift.j2",
    "{src}/PixelImage.swift": "swift/PixelImage.swift.j2",
    "{src}/ImageOps.swift": "swift/ImageOps.swift.j2",
    "{src}/ImageSources.swift": "swift/ImageSources.swift.j2",
    "{src}/Tensors.swift": "swift/Tensors.swift.j2",
    "{src}/ModelResources.swift": "swift/ModelResources.swift.j2",
}
"""Output path (``{src}`` = ``Sources/<Module>``) -> template, once per package."""
PURE_FILES = ("ModelError.swift", "PixelImage.swift", "ImageOps.swift", "Tensors.swift")
"""Shared files that import nothing but Foundation: with each model's ``*Preprocessor.swift`` and
``*Outputs.swift`` they run on any platform (:func:`pure_sources`)."""


def render_files(package: IosPackage) -> dict[str, str]:
    """Relative path -> text of every generated file, sorted by path, after :func:`check`; writes nothing."""
    check(package)
    src = f"Sources/{package.module}"
    views = [_model_view(package, m) for m in package.models]
    jobs = [(path.format(src=src), template, None) for path, template in SHARED_FILES.items()]
    if package.uses_ort:
        jobs.append((f"{src}/OrtSupport.swift", "swift/OrtSupport.swift.j2", None))
    if package.uses_coreml:
        jobs.append((f"{src}/CoreMLSupport.swift", "swift/CoreMLSupport.swift.j2", None))
    for model, view in zip(package.models, views, strict=True):
        name = f"{src}/{model.class_prefix}"
        jobs += [
            (f"{name}Preprocessor.swift", "swift/Preprocessor.swift.j2", view),
            (f"{name}Preprocessor+Images.swift", "swift/PreprocessorImages.swift.j2", view),
            (f"{name}Outputs.swift", "swift/Outputs.swift.j2", view),
            (f"{name}Model.swift", "swift/Model.swift.j2", view),
        ]
        jobs += [(f"{name}Ort.swift", "swift/OrtLoader.swift.j2", view)] if model.ort else []
        jobs += [(f"{name}CoreML.swift", "swift/CoreMLLoader.swift.j2", view)] if model.coreml else []
    base = {
        "package": package,
        "pin": package.ort_package,
        "tools_version": SWIFT_TOOLS_VERSION,
        "macos_version": MACOS_VERSION,
        "ort_product": ORT_PRODUCT,
        "ort_module": ORT_MODULE,
        "resources": RESOURCES,
        "coreml_cache_option": COREML_CACHE_OPTION,
        "models": views,
    }
    return render(_environment(), jobs, base)


def pure_sources(package: IosPackage) -> dict[str, str]:
    """The rendered files that need only Foundation (preprocessing, outputs and what they use)."""
    pure = {*PURE_FILES} | {
        f"{m.class_prefix}{kind}.swift" for m in package.models for kind in ("Preprocessor", "Outputs")
    }
    return {path: text for path, text in render_files(package).items() if path.rsplit("/", 1)[-1] in pure}


def render_package(package: IosPackage, root: Path) -> list[Path]:
    """Write the package to ``root/<package.module>/`` (sorted, ``\\n`` newlines, no timestamps)."""
    return write_tree(render_files(package), root / package.module)
