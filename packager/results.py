"""Typed results that cross module lines: validation -> gates -> bundle/manifest -> report.

Pydantic models so that the manifest and ``results.json`` are these objects dumped as JSON and the
report can be regenerated from a stored ``results.json`` without rerunning anything.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

OrtMode = Literal["default", "reference"]
"""``default``: ORT's optimized kernels on this host. ``reference``: graph optimizations off, so QDQ
pairs run in float -- the numerics ARM INT8 kernels follow, and the mode mobile gates use."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CosineStats(_Frozen):
    mean: float
    min: float
    p1: float
    count: int


class Verification(_Frozen):
    """Face-verification style metrics from labelled pairs (1 same, 0 different)."""

    auc: float
    accuracy: float
    best_threshold: float
    tar_at_far: dict[str, float | None]
    """Keys like ``"1e-3"``; ``None`` when there are too few impostor pairs to resolve that FAR."""
    roc_fpr: list[float]
    roc_tpr: list[float]
    positives: int
    negatives: int


class Latency(_Frozen):
    p50_ms: float
    p90_ms: float
    runs: int
    threads: int


class ModeResult(_Frozen):
    """Everything measured for one artifact in one runtime mode."""

    mode: OrtMode
    cosine: CosineStats
    verification: Verification | None
    decision_flips: float | None
    """Share of pairs whose same/different decision at the configured threshold differs from FP32."""
    latency: Latency
    optimization_level: str = "all"
    """onnxruntime graph optimization level the artifact ran at: ``disabled`` in reference mode; in
    default mode ``all`` unless ORT could not load it there (then see ``optimization_fallback``)."""
    optimization_fallback: str | None = None
    """Why a higher optimization level was not used (ORT's own message); the app must use the same level."""


class GateResult(_Frozen):
    name: str
    metric: str
    value: float | None
    bar: float
    comparison: Literal[">=", "<="]
    mode: OrtMode
    passed: bool


class VariantResult(_Frozen):
    variant: str
    """``fp32`` for the reference, else a registered recipe name."""
    file: str
    """Path relative to the bundle root."""
    sha256: str
    size_bytes: int
    size_ratio: float
    modes: dict[str, ModeResult]
    gate_mode: OrtMode
    gates: list[GateResult]
    passed: bool
    details: dict[str, object]
    """Recipe-specific facts worth a reader's time (excluded nodes and why, calibration method...)."""


class VariantFailure(_Frozen):
    """A variant that could not be built or measured: not shipped, and why."""

    variant: str
    step: str
    """The step whose own work failed (the variant's, or an upstream one such as calibration)."""
    error: str
    """The tool's failure in user words: which tool, the node when known, the cause and the fix."""
    optional: bool
    """Listed in ``optional_variants``: its failure is reported but does not fail the build."""


class IOInfo(_Frozen):
    name: str
    dtype: str
    shape: list[int | str]


class ModelResult(_Frozen):
    name: str
    source: str
    source_sha256: str
    """sha256 of the model's content: the .onnx file, plus its external data files when it has any
    (see ``packager.source.source_sha256`` for how to reproduce it)."""
    source_files: dict[str, str] = {}
    """sha256 of each source file by name: the .onnx and every external data file it references."""
    opset: int
    inputs: list[IOInfo]
    outputs: list[IOInfo]
    preprocessing: dict[str, object]
    evaluation: dict[str, object]
    """What the numbers were measured on: image count, pair count, threshold, data notes."""
    reference: VariantResult
    variants: list[VariantResult]
    failed: list[VariantFailure] = []
    """Configured variants that could not be built or validated (they are not in the bundle)."""
    output: str = ""
    """The output every accuracy number of this model is measured on (``[models].output.name``)."""


class BuildResult(_Frozen):
    schema_version: int = 1
    project: str
    version: str
    config_sha256: str
    gates_enforced: bool
    passed: bool
    tool_versions: dict[str, str]
    host: dict[str, str]
    models: list[ModelResult]
    notes: list[str]
    """Plain statements the report must show (what could not run here and why, data caveats)."""
    settings: dict[str, object] = {}
    """The effective config (paths relative to it) and what the command line overrode."""
