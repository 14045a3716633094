"""The seam platforms plug into: targets registered by entry point, and the products they make.

A target (``targets/android``, ``targets/ios``, or any installed distribution) registers a
:class:`Target` under the ``packager.targets`` entry-point group, the way pytest finds plugins::

    [project.entry-points."packager.targets"]
    android = "targets.android:TARGET"

It has a name, a pydantic schema for its own top-level table in packager.toml (``[android]``), and a
``plan`` function that, given the planned upstream products of every model (prepared FP32, each
variant, calibration tensors, evaluation data), returns its steps and the artifacts they make. The
core imports no target module: it only reads entry points. Heavy toolchains (TensorFlow,
coremltools) belong inside step bodies, so loading a target is cheap.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from packager.errors import ConfigError
from packager.results import IOInfo
from packager.steps import Step, StepOutput

if TYPE_CHECKING:
    from packager.config import Config, ModelSpec
    from packager.manifest import Manifest, ManifestContent

ENTRY_POINT_GROUP = "packager.targets"


@dataclass(frozen=True)
class Product:
    """One artifact of the bundle, as planned: what it is, where it ships, and which step makes it.

    ``bundle_path`` is relative to the bundle root (e.g. ``models/m/fp16.onnx``,
    ``android/models/m/int8.tflite``); ``source`` names the step output holding it (a file, or a
    folder such as an ``.mlpackage``). A product is validated against FP32 by the runner for its
    ``format`` unless ``not_validated_reason`` says why it cannot be on this host.
    """

    model: str
    variant: str
    """The variant it was made from (``fp32`` for the reference)."""
    platform: str
    """``any`` for the core ONNX variants, else the target's name."""
    runtime: str
    format: str
    """The file format, which picks the runner: onnx, ort, tflite, mlpackage..."""
    precision: str
    bundle_path: str
    source: StepOutput
    required: bool = True
    """False: its failure is reported, the bundle ships without it."""
    not_validated_reason: str | None = None
    proxy: StepOutput | None = None
    """With ``not_validated_reason``: the file the artifact was converted from, measured in its place
    with the same data, metrics and gates (an ``.mlpackage``'s TF SavedModel where Core ML cannot run)."""
    proxy_label: str | None = None
    """What ``proxy`` is, in the report's words ("the TF SavedModel it was converted from")."""
    details_step: str | None = None
    """A later step whose :class:`ArtifactRecords` also describe the artifact (EP coverage, a
    benchmark that rejects it...), merged over the making step's."""
    choice: str | None = None
    """Products of one model and platform sharing a ``choice`` are alternatives: the first in plan
    order that passes its gates ships, the others are reported as not shipped (when none passes,
    the first ships and fails the build as usual)."""

    @property
    def name(self) -> str:
        return f"{self.platform}:{self.model}:{self.variant}:{self.format}:{self.precision}"


class ArtifactRecord(BaseModel):
    """What a target step says about one artifact it made, beyond the file itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    inputs: list[IOInfo] = []
    """The artifact's own input tensors (layout, dtype, quantization); empty: the ONNX model's."""
    outputs: list[IOInfo] = []
    details: dict[str, object] = {}
    """Facts for the manifest and report: EP coverage, partitions, method, converter version..."""
    rejected: str | None = None
    """Why the target will not ship it although it was made (e.g. slower than its float sibling)."""
    nondeterminism: str | None = None
    """Why two builds of the same inputs may give this file different bytes (the tool, what varies);
    ``None``: they give the same bytes. Shown per artifact in the manifest."""


class ArtifactRecords(BaseModel):
    """The metadata of a target step that makes or describes artifacts: one record per file it
    wrote (the product's ``source.file``). A step returns ``ArtifactRecords(...).model_dump(mode="json")``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    artifacts: dict[str, ArtifactRecord] = {}


@dataclass(frozen=True)
class ModelProducts:
    """The upstream products of one model a target may build on (step outputs, resolved at run time)."""

    spec: ModelSpec
    prepared: StepOutput
    """The FP32 reference ``.onnx``."""
    variants: dict[str, StepOutput]
    """Each built ONNX variant by name (``fp32`` included)."""
    calibration: StepOutput | None
    """Preprocessed calibration tensors ``.npy`` [N, *input], when the model has calibration images."""
    evaluation: StepOutput
    """Preprocessed evaluation tensors ``.npy``."""


@dataclass(frozen=True)
class TargetContext:
    config: Config
    table: BaseModel
    """The target's own validated config table."""
    models: list[ModelProducts]


@dataclass(frozen=True)
class TargetPlan:
    steps: list[Step] = field(default_factory=list)
    products: list[Product] = field(default_factory=list)


@dataclass(frozen=True)
class SourceContext:
    """What a target's code generator gets once every artifact is measured and chosen."""

    config: Config
    table: BaseModel
    manifest: ManifestContent
    """The bundle's manifest as it stands (models and shipped artifacts; ``sources`` still empty):
    asset names, tensor names, shapes and quantization parameters come from here."""
    root: Path
    """The bundle folder being written; a generator writes only under its platform's folder."""


@dataclass(frozen=True)
class PublishOption:
    """A ``packager publish`` option a target declares: the CLI adds ``--<flag>`` and hands its value to
    that target's ``publish`` hook only, so the core names no platform tool (``--kotlinc PATH``)."""

    flag: str
    """The option without its dashes (``kotlinc``, ``no-maven``)."""
    help: str
    metavar: str | None = None
    """``None``: an on/off switch; else the option takes one value shown as this (``PATH``)."""


@dataclass(frozen=True)
class PublishContext:
    """What a target's ``publish`` hook gets: a bundle that verified against its manifest, and the local
    folder the release is staged in."""

    manifest: Manifest
    table: BaseModel
    """The target's config table as the bundle was built with it (from the manifest's settings)."""
    bundle: Path
    """The bundle folder; read only."""
    out: Path
    """The release folder being staged (becomes ``<name>/<version>/``); a hook writes only under
    ``out/<platform>/``."""
    options: Mapping[str, str | bool]
    """The values of this target's :class:`PublishOption` flags the user gave, by ``flag``."""


@dataclass(frozen=True)
class ReleaseFiles:
    """A target's extra release files (each under ``out/<platform>/``) and the tools that made them,
    name -> version, for the provenance statement."""

    files: list[Path] = field(default_factory=list)
    tools: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    name: str
    schema: type[BaseModel]
    plan: Callable[[TargetContext], TargetPlan]
    """Raises :class:`ConfigError` whose problems each name their field (``[android].ort_variant: ...``);
    the core reports them against the config file."""
    summary: str = ""
    generate: Callable[[SourceContext], list[Path]] | None = None
    """Writes the platform's source files (loaders, build files) into the bundle and returns them;
    they are listed in the manifest with their sha256 and zipped with the platform's artifacts."""
    publish: Callable[[PublishContext], ReleaseFiles] | None = None
    """Writes the platform's release files beside ``<platform>.zip`` (a Maven repository, a package
    archive); called by ``packager publish`` for each platform the bundle's manifest has."""
    publish_options: tuple[PublishOption, ...] = ()
    """Options ``packager publish`` adds for this target (``--kotlinc PATH``); only ``publish`` sees them."""


def installed_targets() -> dict[str, Target]:
    """Every target registered under :data:`ENTRY_POINT_GROUP`, by name; read again whenever
    ``sys.path`` changed (scanning the installed distributions costs ~35 ms, twice per build).

    Raises:
        ConfigError: an entry point does not load, is not a ``Target``, or two share a name.
    """
    return dict(_installed_on(tuple(sys.path)))


@functools.lru_cache(maxsize=8)
def _installed_on(search_path: tuple[str, ...]) -> dict[str, Target]:
    """The targets importlib.metadata finds now; ``search_path`` (``sys.path``) is only the cache key."""
    found: dict[str, Target] = {}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = entry.load()
        except Exception as exc:  # a broken plugin must name itself, whatever it raised
            raise ConfigError(
                f"entry point {entry.name} = {entry.value}", [f"target does not load: {exc}"]
            ) from None
        if not isinstance(target, Target):
            raise ConfigError(f"entry point {entry.name}", [f"{entry.value} is not a packager Target"])
        if target.name in found:
            raise ConfigError(f"entry point {entry.name}", [f"target {target.name!r} registered twice"])
        found[target.name] = target
    return found


def parse_target_tables(tables: dict[str, Any], source: object) -> dict[str, BaseModel]:
    """Validate each top-level table that is not the core's with its target's schema.

    Raises:
        ConfigError: a table no installed target owns ("unknown table [andriod]; one of: ..."), or a
            table its target's schema rejects (every problem listed).
    """
    from pydantic import ValidationError

    if not tables:
        return {}  # most configs have no target table: no need to read every installed distribution
    targets = installed_targets()
    problems: list[str] = []
    parsed: dict[str, BaseModel] = {}
    for name, table in tables.items():
        if name not in targets:
            if targets:
                problems.append(f"unknown table [{name}]; one of: {', '.join(sorted(targets))}")
            else:
                problems.append(
                    f"unknown table [{name}]: no platform target is installed (a target registers under "
                    f"the {ENTRY_POINT_GROUP!r} entry-point group); remove the table or install its target"
                )
            continue
        try:
            parsed[name] = targets[name].schema.model_validate(table)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"])
                where = f"[{name}].{loc}" if loc else f"[{name}]"  # a check across fields has no loc
                message = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    message = f"unknown key (check spelling; the [{name}] keys are listed in README '{name}')"
                problems.append(f"{where}: {message}")
    if problems:
        raise ConfigError(str(source), problems)
    return parsed
