"""The ``[android]`` table of packager.toml: what the Android bundle ships and how the app runs it."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from targets.table import PlatformTable

DEFAULT_INT8_METHOD = "float-prelu"
"""How the INT8 .tflite is made (a key of :data:`targets.android.tflite_int8.INT8_METHODS`): declared
here, where planning reads it, so that a plan does not import the converter and onnx."""

Runtime = Literal["ort", "tflite"]
OrtEp = Literal["xnnpack", "cpu", "nnapi"]
TfliteDelegate = Literal["xnnpack", "nnapi", "gpu"]
TflitePrecision = Literal["fp32", "fp16", "int8", "int8-dynamic"]
NnapiFlag = Literal["USE_FP16", "USE_NCHW", "CPU_DISABLED", "CPU_ONLY"]

_PACKAGE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_MODULE = re.compile(r"^[a-z][a-z0-9_-]*$")
# Kotlin hard keywords: a package segment named like one does not compile.
_KOTLIN_KEYWORDS = frozenset(
    {
        "as",
        "break",
        "class",
        "continue",
        "do",
        "else",
        "false",
        "for",
        "fun",
        "if",
        "in",
        "interface",
        "is",
        "null",
        "object",
        "package",
        "return",
        "super",
        "this",
        "throw",
        "true",
        "try",
        "typealias",
        "typeof",
        "val",
        "var",
        "when",
        "while",
    }
)


class AndroidSpec(PlatformTable):
    """``[android]``: one Gradle library module with each model's ORT and TFLite artifacts and loaders.

    Example::

        [android]
        package = "com.example.faceid"   # Kotlin package and Gradle namespace
        runtimes = ["ort", "tflite"]
    """

    package: str
    """Kotlin package and Gradle ``namespace`` (reverse domain, lower case: ``com.example.faceid``)."""
    module: str | None = None
    """Gradle module folder and name; default: the project name."""
    runtimes: Annotated[list[Runtime], Field(min_length=1)] = ["ort", "tflite"]
    """Which runtimes the bundle ships a model for; each is its own artifact, loader and dependency."""
    optional_runtimes: list[Runtime] = []
    """Runtimes whose artifacts may fail to convert without failing the build (they are reported,
    and the bundle ships without them); by default every runtime listed is required."""
    ort_variant: str = "auto"
    """The ONNX variant converted to ORT format beside FP32: a variant name, or ``auto`` for the first
    INT8 variant (mixed, int8-qdq, int8-dynamic, in that order) that passed its gates."""
    ort_eps: Annotated[list[OrtEp], Field(min_length=1)] = ["xnnpack", "cpu"]
    """Execution providers in the order the loader tries them. NNAPI is deprecated since Android 15
    and often slower through partitioning (DESIGN §5 pitfall 11): opt in by listing it."""
    nnapi_flags: list[NnapiFlag] = []
    """ORT's NNAPI EP flags (the Java ``NNAPIFlags`` names), used when ``nnapi`` is in ``ort_eps``."""
    tflite_precisions: Annotated[list[TflitePrecision], Field(min_length=1)] = ["fp32", "fp16", "int8"]
    """``int8``: full-integer (calibrated, checked on XNNPACK); ``int8-dynamic``: dynamic-range (INT8
    weights, float activations; no calibration data, no speed check)."""
    tflite_delegate: TfliteDelegate = "xnnpack"
    threads: int = Field(default=4, ge=1, le=16)
    """Intra-op threads the loaders ask for (XNNPACK ``intra_op_num_threads``, LiteRT ``numThreads``)."""
    max_partitions: int = Field(default=1, ge=1)
    """An INT8 .tflite split into more XNNPACK partitions than this is rejected (DESIGN pitfall 17)."""
    slower_int8: Literal["fail", "reject"] = "fail"
    """An INT8 .tflite slower than its FP32 sibling on the host: ``fail`` the build, or ``reject``
    the artifact (not shipped, reported)."""

    @field_validator("package")
    @classmethod
    def _package(cls, v: str) -> str:
        if not _PACKAGE.match(v):
            raise ValueError(
                f"{v!r} is not a Java/Kotlin package name: lower-case dot-separated identifiers with at "
                "least two parts, such as com.example.faceid"
            )
        bad = [part for part in v.split(".") if part in _KOTLIN_KEYWORDS]
        if bad:
            raise ValueError(f"package segment {bad[0]!r} is a Kotlin keyword: rename it")
        return v

    @field_validator("module")
    @classmethod
    def _module(cls, v: str | None) -> str | None:
        if v is not None and not _MODULE.match(v):
            raise ValueError(f"{v!r} is not a Gradle module name: lower case letters, digits, - and _")
        return v

    @model_validator(mode="after")
    def _nnapi_flags_need_nnapi(self) -> AndroidSpec:
        if self.nnapi_flags and "nnapi" not in self.ort_eps:
            raise ValueError("nnapi_flags are given but nnapi is not in ort_eps: add it or drop the flags")
        return self
