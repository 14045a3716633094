"""manifest.json as one typed model: what ``packager build`` writes and what device_bench and CI read.

The bundle's contract with everything downstream. The metric, gate and I/O types are the ones in
:mod:`packager.results`, so the manifest says exactly what was measured, in the same words as
``results.json`` and the report. ``packager schema manifest`` prints the JSON Schema.

``content_sha256`` is the sha256 of ``json.dumps(content, sort_keys=True)`` where ``content`` is the
manifest's JSON without ``content_sha256`` and ``built_at`` (the only wall-clock value in a bundle).

**Reproducibility** (issue 11, after reproducible-builds.org). Two builds of the same inputs, in any
folders, with clean caches, give the same files: every artifact, generated source and ``<platform>.zip``
has the same sha256, except an artifact whose ``nondeterminism`` says why its tool writes other bytes
each time. A zip holding such an artifact differs in that entry (and in any source that names its
sha256, such as the iOS loaders' cache keys); its other entries are the same bytes. The content itself
also holds this host's measurements, which vary from build to build: every ``latency`` and
``baseline_latency``, conversion ``seconds`` and the INT8 speed check's ``host_speed``. So
``content_sha256`` is equal for two builds only when those are (a rebuild from the same cache); the rest
of the content is equal for two builds of the same inputs, but for the checksums that ``nondeterminism``
explains and those of the ``reports``, which print the same measurements. One decision rests on a
measurement: an INT8 ``.tflite`` that ``slower_int8 = "reject"`` turns away for being slower than FP32
on this host may ship from one build and not from another when the two run close.

This module imports nothing but pydantic and the result types: device_bench reads bundles with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from packager.results import (
    EvaluationFacts,
    GateResult,
    IOInfo,
    ModelResult,
    ModeResult,
    VariantFailure,
    VariantResult,
)

SCHEMA_VERSION = 7
"""3: one typed model; every artifact carries its platform, runtime, precision and validation.
4: generated ``sources``; quantized tensors carry ``scale``/``zero_point``; ``evaluation`` typed.
5: an artifact this host cannot run may carry ``validated_on``, the stand-in its metrics were measured on.
6: an artifact whose bytes differ from build to build says why in ``nondeterminism``."""

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


def compact_metrics(modes: dict[str, ModeResult]) -> dict[str, ModeResult]:
    """The measurements without the ROC curves (``roc_fpr``/``roc_tpr`` left empty): those are for
    plots, ``results.json`` keeps them, and the manifest would carry hundreds of points per output."""

    def without_roc(mode: ModeResult) -> ModeResult:
        outputs = [
            out
            if out.verification is None
            else out.model_copy(
                update={"verification": out.verification.model_copy(update={"roc_fpr": [], "roc_tpr": []})}
            )
            for out in mode.outputs
        ]
        return mode.model_copy(update={"outputs": outputs})

    return {name: without_roc(mode) for name, mode in modes.items()}


class ManifestProject(_Frozen):
    name: str
    version: str


class ManifestVariant(_Frozen):
    """One ONNX variant of a model (the FP32 reference first), as validated against FP32."""

    variant: str
    """``fp32`` for the reference, else a registered recipe name."""
    file: str
    """Path relative to the bundle root."""
    sha256: Sha256
    size_bytes: int
    size_ratio: float
    """Size over the FP32 reference's, rounded to 6 digits."""
    quantization: dict[str, object]
    """The recipe's facts (calibration, excluded nodes, quantization parameters...)."""
    metrics: dict[str, ModeResult]
    """Measurements per accuracy mode (``default``, ``reference``); ROC curves are in results.json."""
    gate_mode: str
    """The mode the gates judged."""
    gates: list[GateResult]
    passed: bool

    @classmethod
    def from_result(cls, result: VariantResult) -> ManifestVariant:
        return cls(
            variant=result.variant,
            file=result.file,
            sha256=result.sha256,
            size_bytes=result.size_bytes,
            size_ratio=round(result.size_ratio, 6),
            quantization=result.details,
            metrics=compact_metrics(result.modes),
            gate_mode=result.gate_mode,
            gates=result.gates,
            passed=result.passed,
        )


class ManifestModel(_Frozen):
    name: str
    source: str
    """The source model's file name."""
    source_sha256: Sha256
    """Of the model's content: the .onnx plus its external data files (``packager.source``)."""
    source_files: dict[str, Sha256]
    """sha256 of each source file by name."""
    opset: int
    primary_output: str
    output_kinds: dict[str, str]
    preprocessing: dict[str, object]
    """Image -> tensor exactly as the app must do it (size, channels, mean/std, layout, pixel range)."""
    inputs: list[IOInfo]
    outputs: list[IOInfo]
    """Every output the app receives, in the model's order."""
    evaluation: EvaluationFacts
    """What the numbers were measured on: image and pair counts, the threshold, calibration images."""
    variants: list[ManifestVariant]
    """The ONNX variants in the bundle, the FP32 reference first."""
    failed_variants: list[VariantFailure]
    """Configured variants that could not be built or validated: not in the bundle, and why."""

    @classmethod
    def from_result(cls, model: ModelResult) -> ManifestModel:
        return cls(
            name=model.name,
            source=model.source,
            source_sha256=model.source_sha256,
            source_files=model.source_files,
            opset=model.opset,
            primary_output=model.primary_output,
            output_kinds=model.output_kinds,
            preprocessing=model.preprocessing,
            inputs=model.inputs,
            outputs=model.outputs,
            evaluation=model.evaluation,
            variants=[ManifestVariant.from_result(v) for v in [model.reference, *model.variants]],
            failed_variants=model.failed,
        )


class ArtifactValidation(_Frozen):
    """How an artifact was checked against FP32 on the build host, or why it could not be."""

    metrics: dict[str, ModeResult]
    """Measurements per accuracy mode; empty when ``not_validated_reason`` is set."""
    not_validated_reason: str | None
    """Why this host could not run it (e.g. Core ML prediction needs macOS): no numbers or gates of its
    own; with ``validated_on``, the numbers and gates are the stand-in's."""
    validated_on: str | None = None
    """The stand-in measured in its place, such as the TF SavedModel an .mlpackage was converted from."""
    gate_mode: str
    gates: list[GateResult]
    passed: bool
    details: dict[str, object]
    """Recipe or target facts (EP coverage, partitions, quantization parameters...)."""

    @classmethod
    def from_result(cls, result: VariantResult) -> ArtifactValidation:
        return cls(
            metrics=compact_metrics(result.modes),
            not_validated_reason=result.not_validated_reason,
            validated_on=result.validated_on,
            gate_mode=result.gate_mode,
            gates=result.gates,
            passed=result.passed,
            details=result.details,
        )


class ManifestArtifact(_Frozen):
    """One shipped artifact: what a device harness pushes and what an app loads."""

    path: str
    """Relative to the bundle root, ``/``-separated."""
    sha256: Sha256
    """Of the file; for a folder (``.mlpackage``), of its sorted listing of files and their sha256."""
    size_bytes: int
    model: str
    """The ``ManifestModel`` it is made from."""
    variant: str
    """The variant it was made from (``fp32`` for the reference)."""
    platform: str
    """``any`` for the ONNX variants, else the target's name (``android``, ``ios``)."""
    runtime: str
    """What loads it in the app: ``onnxruntime``, ``tflite``, ``coreml``..."""
    format: str
    """``onnx``, ``ort``, ``tflite``, ``mlpackage``...: picks the benchmark tool and the runner."""
    precision: str
    inputs: list[IOInfo]
    outputs: list[IOInfo]
    validation: ArtifactValidation
    nondeterminism: str | None = None
    """Why two builds of the same inputs give this file different bytes (the tool and what varies);
    ``None``: they give the same bytes (module docstring, *Reproducibility*)."""


class ManifestFile(_Frozen):
    """A file of the bundle and its checksum."""

    path: str
    """Relative to the bundle root, ``/``-separated."""
    sha256: Sha256
    size_bytes: int


class ManifestSource(ManifestFile):
    """A source file a platform target generated for the app (a loader, a build file, a README), or a
    platform's archive."""

    platform: str


class ManifestContent(_Frozen):
    """Everything ``content_sha256`` covers."""

    schema_version: Literal[7]  # = SCHEMA_VERSION
    project: ManifestProject
    config_sha256: str
    """sha256 of the effective config (``Config.digest``)."""
    gates_enforced: bool
    """False when built with ``--no-gates``: then ``passed`` may be false and the bundle still written."""
    passed: bool
    tool_versions: dict[str, str]
    settings: dict[str, object]
    """The effective config (paths relative to it) and what the command line overrode."""
    models: list[ManifestModel]
    artifacts: list[ManifestArtifact]
    """Every shipped artifact, sorted by path."""
    sources: list[ManifestSource] = []
    """Every generated source file, sorted by path (made from the rest of this manifest)."""
    archives: list[ManifestSource] = []
    """``<platform>.zip`` of each platform folder (sorted entries, fixed timestamps and modes): the same
    bytes for two builds of the same inputs unless an artifact in it has ``nondeterminism``."""
    reports: list[ManifestFile] = []
    """``results.json`` and the reports rendered from it (``report.md``, ``report.html``), sorted by path:
    written before the manifest, so that ``packager verify`` catches an edited result. ``packager report``
    renders the same bytes again from ``results.json`` with the same packager version."""

    def content_digest(self) -> str:
        """sha256 of the sorted JSON of the hashed fields, as written to manifest.json."""
        content = json.loads(self.model_dump_json(include=set(ManifestContent.model_fields)))
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


class Manifest(ManifestContent):
    """manifest.json of a bundle (``schema_version`` 7)."""

    content_sha256: Sha256
    """sha256 of ``json.dumps(content, sort_keys=True)``, content = this JSON minus the two last fields."""
    built_at: str
    """UTC time of the build, ISO 8601; the only wall-clock value in a bundle."""

    @classmethod
    def seal(cls, content: ManifestContent, built_at: str) -> Manifest:
        """The content plus its digest and the build time."""
        return cls(**dict(content), content_sha256=content.content_digest(), built_at=built_at)

    def to_json(self) -> str:
        """What manifest.json holds: sorted keys, one-space indent, a final newline (deterministic)."""
        return json.dumps(json.loads(self.model_dump_json()), indent=1, sort_keys=True) + "\n"


def load_manifest(
    path: Path,
    error: Callable[[str, str, str], Exception],
    newer_fix: str = "use a packager as new as the one that built the bundle",
) -> Manifest:
    """``path`` (a bundle's manifest.json) as the typed :class:`Manifest`.

    Raises ``error(path, problem, fix)`` when it is unreadable, not JSON, of another ``schema_version``
    (``newer_fix`` for a newer one, else: rebuild) or does not validate (the first field named).
    """
    rebuild = "rebuild the bundle with packager (`packager build`)"
    try:
        text = path.read_text()
        data = json.loads(text)
    except OSError as exc:
        raise error(str(path), f"unreadable manifest ({exc.strerror})", rebuild) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(str(path), f"manifest is not JSON ({exc})", rebuild) from None
    found = data.get("schema_version") if isinstance(data, dict) else None
    if found != SCHEMA_VERSION:
        newer = isinstance(found, int) and found > SCHEMA_VERSION
        raise error(
            str(path),
            f"manifest schema_version {found!r} found, {SCHEMA_VERSION} expected",
            newer_fix if newer else rebuild,
        )
    try:
        return Manifest.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise error(
            str(path),
            f"manifest does not match schema_version {SCHEMA_VERSION} at {where}: {first['msg']} "
            f"({exc.error_count()} errors)",
            rebuild,
        ) from None
