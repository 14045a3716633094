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


class OutputMetrics(_Frozen):
    """One output of one artifact compared with FP32's on the evaluation images (packager.validate.metrics).

    Every kind gets cosine and the dense statistics; the kind adds its own: top-k agreement and KL
    for ``classification``/``logits``, mask IoU for ``dense`` with a mask threshold, verification
    and decision flips for ``embedding`` when pairs were given. ``None`` = not measured (not this
    kind's, or no data for it); a non-finite candidate value is stored as the worst finite number
    the metric has (SQNR/PSNR -80 dB) or ``None`` for unbounded errors.
    """

    name: str
    kind: str
    cosine: CosineStats
    sqnr_db: float
    """Pooled signal-to-quantization-noise ratio, dB (capped at +-80)."""
    min_sqnr_db: float
    """The worst single sample's SQNR, dB."""
    psnr_db: float
    max_abs: float | None
    """Largest absolute difference, in the output's own units."""
    rel_l2: float | None
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    kl_divergence: float | None = None
    """Mean KL(P_fp32 || P_candidate) of the softmax (logits) or of the probabilities, nats."""
    mask_iou: float | None = None
    verification: Verification | None = None
    decision_flips: float | None = None
    """Share of pairs whose same/different decision at the configured threshold differs from FP32."""


class TaskResult(_Frozen):
    """One metric of the model's task-level check (``packager.tasks``), FP32 vs this artifact."""

    name: str
    value: float | None
    higher_is_better: bool
    description: str


class ModeResult(_Frozen):
    """Everything measured for one artifact in one runtime mode."""

    mode: OrtMode
    outputs: list[OutputMetrics]
    """Every output of the model, in the model's order."""
    latency: Latency
    task: list[TaskResult] = []
    """The task check's metrics (boxes matched, labels equal...), when the model has one."""
    baseline_latency: Latency | None = None
    """FP32 timed in the same step, runs interleaved with this artifact's (default mode only): the
    latency ratio compares numbers taken under the same machine load."""
    optimization_level: str = "all"
    """onnxruntime graph optimization level the artifact ran at: ``disabled`` in reference mode; in
    default mode ``all`` unless ORT could not load it there (then see ``optimization_fallback``)."""
    optimization_fallback: str | None = None
    """Why a higher optimization level was not used (ORT's own message); the app must use the same level."""

    def output(self, name: str) -> OutputMetrics:
        for out in self.outputs:
            if out.name == name:
                return out
        raise KeyError(f"no output {name!r} in {[o.name for o in self.outputs]}")


class GateResult(_Frozen):
    output: str
    """The output the gate judged."""
    name: str
    metric: str
    value: float | None
    bar: float
    comparison: Literal[">=", "<="]
    mode: OrtMode
    passed: bool


class IOInfo(_Frozen):
    """One input or output tensor of an artifact, as the app feeds or reads it."""

    name: str
    dtype: str
    """numpy name: float32, float16, int8, uint8..."""
    shape: list[int | str]
    """As the artifact declares it (NCHW for ONNX, often NHWC for .tflite)."""
    scale: float | None = None
    """Quantized tensors only: ``real = (q - zero_point) * scale``."""
    zero_point: int | None = None

    def int_shape(self) -> list[int]:
        """The shape as integers; raises ``ValueError`` on a symbolic dim (prepared inputs have none)."""
        if not all(isinstance(d, int) for d in self.shape):
            raise ValueError(f"{self.name} has symbolic dims {self.shape}")
        return [int(d) for d in self.shape]


class VariantResult(_Frozen):
    """One artifact of the bundle and everything measured on it (an ONNX variant or a platform artifact)."""

    variant: str
    """The variant it was made from: ``fp32`` for the reference, else a registered recipe name."""
    file: str
    """Path relative to the bundle root."""
    sha256: str
    """Of the file; for a folder (``.mlpackage``), of its sorted listing of files and their sha256."""
    size_bytes: int
    """A folder's files summed."""
    size_ratio: float
    modes: dict[str, ModeResult]
    """Validation per accuracy mode; empty when ``not_validated_reason`` is set."""
    gate_mode: str
    gates: list[GateResult]
    passed: bool
    details: dict[str, object]
    """Recipe or target facts worth a reader's time (excluded nodes, EP coverage, quantization params...)."""
    platform: str = "any"
    """``any`` for the core ONNX variants, else the target that made it (android, ios...)."""
    runtime: str = "onnxruntime"
    format: str = "onnx"
    precision: str = ""
    not_validated_reason: str | None = None
    """Why this host could not run it (e.g. Core ML prediction needs macOS): no numbers, no gates, unless
    ``validated_on`` names a stand-in that was measured and gated in its place."""
    validated_on: str | None = None
    """The stand-in measured instead (the TF SavedModel an .mlpackage was converted from)."""
    not_shipped_reason: str | None = None
    """Measured but left out of the bundle: a preferred alternative passed its gates, or its target
    rejected it (an INT8 file slower than its float sibling, say). Its gates do not decide the build."""
    inputs: list[IOInfo] = []
    """The artifact's own tensors when its target recorded them (NHWC, quantized...); empty: the
    model's (``ModelResult.inputs``/``outputs``)."""
    outputs: list[IOInfo] = []


ArtifactResult = VariantResult
"""Every artifact is described the same way; platform artifacts live in ``ModelResult.artifacts``."""


class VariantFailure(_Frozen):
    """A variant that could not be built or measured: not shipped, and why."""

    variant: str
    step: str
    """The step whose own work failed (the variant's, or an upstream one such as calibration)."""
    error: str
    """The tool's failure in user words: which tool, the node when known, the cause and the fix."""
    optional: bool
    """Listed in ``optional_variants``: its failure is reported but does not fail the build."""


class EvaluationCounts(_Frozen):
    """What the evaluation data holds (the evaluation data step's record, ``datasets.EvaluationMeta``)."""

    images: int
    """Inputs measured: .npy rows plus image files."""
    from_images: int
    """Of those, from ``evaluation.images``."""
    from_pairs_only: int
    """Of those, only referenced by the pairs file."""
    pairs: int
    positives: int
    negatives: int
    pairs_file: str | None


class EvaluationFacts(EvaluationCounts):
    """What a model's numbers were measured on: the evaluation data, the bar, the calibration size."""

    threshold: float | None
    """The app's same/different cosine threshold; None: FP32's best-accuracy threshold."""
    calibration_images: int | None = None
    """Images the static and mixed recipes were calibrated on; None when nothing was calibrated."""


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
    evaluation: EvaluationFacts
    reference: VariantResult
    variants: list[VariantResult]
    artifacts: list[VariantResult] = []
    """Artifacts platform targets made from the variants (one table per platform in the report)."""
    failed: list[VariantFailure] = []
    """Configured variants that could not be built or validated (they are not in the bundle)."""
    primary_output: str = ""
    """The output calibration choice and mixed precision optimise for (the first declared one);
    every output is validated and gated (``ModeResult.outputs``)."""
    output_kinds: dict[str, str] = {}
    """Kind of every output by name, as validated (undeclared outputs are ``generic``)."""


class BuildResult(_Frozen):
    schema_version: int = 2
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


class PreparedMeta(_Frozen):
    """The prepare step's record, read by the steps and the assembly downstream (a typed model,
    never a dict read by keys)."""

    input: IOInfo
    """The image input as pinned ([1, C, H, W] or [1, H, W, C])."""
    output: IOInfo
    """The primary output (the first declared one, else the model's first)."""
    outputs: list[IOInfo]
    """Every output the app receives, shapes re-inferred at the pinned input."""
    opset_source: int
    opset: int
    changes: list[str]
    equivalence_cosine: float
    equivalence: dict[str, float]
