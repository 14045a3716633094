"""The ``[ios]`` table of packager.toml: what the iOS bundle ships and how the app runs it."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from targets.ort_mobile.ep_config import CoreMLFormat, CoreMLUnits
from targets.table import PlatformTable

Runtime = Literal["ort", "coreml"]
OrtEp = Literal["coreml", "cpu"]
CoreMLPrecision = Literal["fp16", "int8-weights"]

DEPLOYMENT_TARGETS = ("iOS15", "iOS16", "iOS17", "iOS18")
"""``coremltools.target`` values an ML Program can have: the format exists from iOS 15 (coremltools'
"Convert models to ML Programs" guide; ``convert_to="mlprogram"`` refuses older targets)."""

SHARED_TYPES = (
    "Backend", "BundledFile", "ModelError", "PixelImage", "ImageOps", "Tensors", "ModelResources",
    "OrtSupport", "CoreMLSupport", "BGRImage",
)  # fmt: skip
"""Types every generated Swift package defines: a module named like one makes ``Module.Type`` ambiguous in
the app, so :data:`SWIFT_RESERVED` refuses them as module names."""
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Swift keywords (The Swift Programming Language, "Lexical Structure"): a module named like one does not
# compile as `import <name>`. Common standard-library and SDK names are refused too, since a module
# that shadows them breaks the app's own code.
SWIFT_RESERVED = frozenset(
    {
        "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import", "init",
        "inout", "internal", "let", "open", "operator", "private", "precedencegroup", "protocol", "public",
        "rethrows", "static", "struct", "subscript", "typealias", "var", "break", "case", "catch",
        "continue", "default", "defer", "do", "else", "fallthrough", "for", "guard", "if", "in", "repeat",
        "return", "throw", "switch", "where", "while", "Any", "as", "await", "false", "is", "nil", "self",
        "Self", "super", "throws", "true", "try", "_", "Type", "Protocol",
        # system and runtime modules an app imports beside the package
        "Swift", "Foundation", "CoreML", "CoreVideo", "CoreGraphics", "UIKit", "SwiftUI", "Combine",
        "Accelerate", "Darwin", "Dispatch", "ObjectiveC", "Vision", "Metal", "AVFoundation", "XCTest",
        "os", "OnnxRuntimeBindings", "onnxruntime_objc",
    }
) | set(SHARED_TYPES)  # fmt: skip


class IosSpec(PlatformTable):
    """``[ios]``: one Swift package with each model's ORT-format and Core ML artifacts and loaders.

    Example::

        [ios]
        module = "FaceID"              # Swift package, product and module name
        runtimes = ["ort", "coreml"]
    """

    module: str | None = None
    """Swift package, library product and module name (an identifier, ``FaceID``); default: the project
    name in UpperCamelCase."""
    runtimes: Annotated[list[Runtime], Field(min_length=1)] = ["ort", "coreml"]
    """``ort``: ORT format for the CoreML execution provider; ``coreml``: a Core ML ML Program."""
    optional_runtimes: list[Runtime] = []
    """Runtimes whose artifacts may fail to convert without failing the build (reported, left out)."""
    ort_variant: str = "auto"
    """The ONNX variant converted to ORT format beside FP32: a variant name, or ``auto`` for ``fp16``
    when the model builds it, else FP32 alone. QDQ INT8 runs almost nothing on the CoreML EP
    (DESIGN §5 pitfall 8): naming one is allowed and warned about with its coverage."""
    ort_eps: Annotated[list[OrtEp], Field(min_length=1)] = ["coreml", "cpu"]
    """Execution providers in the order the loader tries them."""
    coreml_model_format: CoreMLFormat = "MLProgram"
    """The CoreML EP's ``ModelFormat``: ``MLProgram`` (iOS 15+, FP16 on the GPU/Neural Engine) or the older
    ``NeuralNetwork``."""
    compute_units: CoreMLUnits = "ALL"
    """Core ML compute units for both runtimes (the EP's ``MLComputeUnits`` and
    ``MLModelConfiguration.computeUnits``); upper-case ``ALL`` as ORT spells it."""
    coreml_precisions: Annotated[list[CoreMLPrecision], Field(min_length=1)] = ["fp16"]
    """``fp16``: an FP16 ML Program; ``int8-weights``: the same with INT8 weights (linear, per channel,
    ``coremltools.optimize.coreml.linear_quantize_weights``), computed in FP16."""
    deployment_target: str = "iOS15"
    """Oldest iOS the package supports: ``iOS15`` ... ``iOS18`` (``coremltools.target``; Package.swift's
    ``.iOS(.v15)``)."""
    threads: int = Field(default=4, ge=1, le=16)
    """Intra-op threads of the ORT CPU EP (the nodes Core ML does not take)."""
    author: str = ""
    """Core ML model metadata ``author``; default: the project name."""
    license: str = ""
    """Core ML model metadata ``license``."""

    @field_validator("module")
    @classmethod
    def _module(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not _IDENTIFIER.match(v):
            raise ValueError(
                f"{v!r} is not a Swift module name: letters, digits and _, not starting with a digit "
                "(such as FaceID)"
            )
        if v in SWIFT_RESERVED:
            raise ValueError(
                f"{v!r} is a Swift keyword, a system module or a type every generated package defines: "
                "rename the module"
            )
        return v

    @field_validator("deployment_target")
    @classmethod
    def _deployment_target(cls, v: str) -> str:
        if v in DEPLOYMENT_TARGETS:
            return v
        older = re.fullmatch(r"iOS(\d+)", v)
        if older and int(older.group(1)) < 15:
            raise ValueError(
                f"{v!r} is too old: Core ML ML Programs and the generated Swift package need iOS 15 or "
                f"newer; use one of {', '.join(DEPLOYMENT_TARGETS)}"
            )
        raise ValueError(
            f"{v!r} is not a deployment target packager knows: use one of {', '.join(DEPLOYMENT_TARGETS)}"
        )

    @model_validator(mode="after")
    def _int8_weights_need_ios16(self) -> IosSpec:
        # coremltools' constexpr_affine_dequantize (INT8 weights) exists from iOS 16: compressing an iOS15
        # package silently raises its target, which the Swift package would then not guard.
        if "int8-weights" in self.coreml_precisions and self.deployment_target == "iOS15":
            raise ValueError(
                'coreml_precisions "int8-weights" needs iOS 16 (INT8 weights are an iOS 16 Core ML op): '
                'set deployment_target = "iOS16" or drop int8-weights'
            )
        return self

    @property
    def ios_version(self) -> str:
        """``15.0`` for ``iOS15``: what Package.swift and Info.plist spell."""
        return f"{self.deployment_target.removeprefix('iOS')}.0"


def module_name(project: str, table: IosSpec) -> str:
    """``[ios].module``, else the project name in UpperCamelCase (``face-id`` -> ``FaceId``); a name that
    would start with a digit gets ``Models`` in front."""
    if table.module:
        return table.module
    words = re.findall(r"[A-Za-z0-9]+", project)
    name = "".join(w[:1].upper() + w[1:] for w in words) or "Models"
    if name[0].isdigit() or name in SWIFT_RESERVED:
        name = f"Models{name}"
    return name
