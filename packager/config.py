"""The ``packager.toml`` schema: one declaration per option, validated once, errors collected.

Paths in the file resolve relative to the file itself, so a config can be run from any working
directory (CI jobs rarely start in the project folder).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from packager.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]*$"


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a release config must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectSpec(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    version: Annotated[str, Field(min_length=1, pattern=r"^[0-9A-Za-z][0-9A-Za-z.+-]*$")]


class InputSpec(_Strict):
    """How the app turns a camera frame into the model's input tensor.

    The tensor is ``(pixel - mean) / std`` with pixels in 0..255, in the given channel order and layout.
    The same numbers drive host validation and the generated app code, so they cannot drift apart.
    """

    name: str | None = None
    size: Annotated[list[int], Field(min_length=2, max_length=2)]
    channels: Literal["RGB", "BGR", "GRAY"] = "RGB"
    mean: Annotated[list[float], Field(min_length=1, max_length=3)] = [0.0, 0.0, 0.0]
    std: Annotated[list[float], Field(min_length=1, max_length=3)] = [1.0, 1.0, 1.0]
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    resize: Literal["stretch", "center-crop", "letterbox"] = "stretch"
    """How a frame of another size becomes ``size``: ``stretch`` both axes, ``center-crop`` after
    scaling to cover, or ``letterbox`` (scale to fit, centred on black) as detectors expect."""

    @field_validator("size")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(x <= 0 for x in v):
            raise ValueError(f"size must be two positive integers [height, width], got {v}")
        return v

    @field_validator("std")
    @classmethod
    def _nonzero(cls, v: list[float]) -> list[float]:
        if any(x == 0 for x in v):
            raise ValueError("std must not contain 0 (it divides the pixel values)")
        return v

    @model_validator(mode="after")
    def _channel_counts(self) -> InputSpec:
        n = 1 if self.channels == "GRAY" else 3
        for field in ("mean", "std"):
            values = getattr(self, field)
            if len(values) not in (1, n):
                raise ValueError(f"{field} has {len(values)} values; {self.channels} needs 1 or {n}")
        return self

    @property
    def height(self) -> int:
        return self.size[0]

    @property
    def width(self) -> int:
        return self.size[1]

    @property
    def num_channels(self) -> int:
        return 1 if self.channels == "GRAY" else 3


OutputKind = Literal["embedding", "classification", "logits", "dense", "generic"]
"""What an output holds, which decides its metrics and default gates (``packager.validate.gates``):
``embedding`` vectors compared by cosine (and by verification metrics when pairs are given);
``classification`` probabilities and ``logits`` (pre-softmax scores) compared by top-k agreement and
KL divergence; ``dense`` maps (heatmaps, probability maps, segmentation, regression maps, landmarks)
compared by SQNR/PSNR/errors; ``generic`` anything else, by cosine, SQNR and max abs error."""


class GatesSpec(_Strict):
    """Release bars; an unset bar takes its output kind's default (``packager.validate.gates.GATES``).

    At model level a bar applies to every output whose kind has that metric; in an output's own
    ``gates`` table it applies to that output only and must be one its kind has.
    """

    min_mean_cosine: Annotated[float, Field(ge=-1.0, le=1.0)] | None = None
    max_auc_drop: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_decision_flips: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    min_top1_agreement: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    min_top5_agreement: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_kl_divergence: Annotated[float, Field(ge=0.0)] | None = None
    min_sqnr_db: float | None = None
    min_mask_iou: Annotated[float, Field(ge=0.0, le=1.0)] | None = None

    def given(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class OutputSpec(_Strict):
    """One model output: what it holds, how the app post-processes it, and its own gates."""

    name: str | None = None
    """The output's name in the model; only the single ``output`` table may omit it (= the first)."""
    kind: OutputKind = "generic"
    normalize: Literal["l2", "none"] = "none"
    """``l2``: the app L2-normalises each sample (embeddings); metrics compare normalised values."""
    mask_threshold: float | None = None
    """For ``dense`` probability maps: the app's foreground threshold; adds mask IoU at it."""
    gates: GatesSpec = GatesSpec()

    @model_validator(mode="after")
    def _kind_fits(self) -> OutputSpec:
        from packager.validate.gates import inapplicable_gates

        if self.mask_threshold is not None and self.kind != "dense":
            raise ValueError(f"mask_threshold is for dense outputs, not {self.kind}")
        wrong = inapplicable_gates(self.kind, self.gates.given())
        if wrong:
            raise ValueError(f"gates {wrong} do not apply to a {self.kind} output")
        return self


class CalibrationSpec(_Strict):
    """Calibration data for static INT8: a folder of images, a list file of image paths, or a .npy."""

    images: Path
    count: Annotated[int, Field(gt=0)] = 200
    min_count: Annotated[int, Field(gt=0)] = 8
    method: Literal["minmax", "entropy", "percentile"] = "percentile"
    percentile: float | list[float] = [99.99, 99.995, 99.999]
    """One value, or candidates: the recipe keeps whichever is closest to FP32 on the calibration images."""
    per_channel: bool = True
    reduce_range: bool = False
    probe_images: Annotated[int, Field(gt=0)] = 32
    """Calibration images used to compare candidate settings (and by mixed precision for its target)."""

    @field_validator("percentile")
    @classmethod
    def _percentile_range(cls, v: float | list[float]) -> float | list[float]:
        values = v if isinstance(v, list) else [v]
        if not values or any(not 90.0 < p <= 100.0 for p in values):
            raise ValueError(f"percentile values must be in (90, 100], got {v}")
        return v

    def percentiles(self) -> list[float]:
        return sorted(set(self.percentile)) if isinstance(self.percentile, list) else [self.percentile]


class EvaluationSpec(_Strict):
    """What every variant is measured on: images (no labels needed) and, optionally, labelled pairs.

    ``images`` is a folder of images, a ``.txt`` list of image paths, or a ``.npy`` of preprocessed
    tensors [N, *input]. ``pairs`` (``image1 image2 label`` lines) add verification metrics (AUC,
    TAR@FAR, decision flips at ``threshold``) for embedding outputs; their images are measured too.
    """

    images: Path | None = None
    pairs: Path | None = None
    count: Annotated[int, Field(gt=0)] | None = None
    """At most this many of ``images`` (in their sorted order); pair images are always all used."""
    threshold: float | None = None
    """The app's same/different cosine cut for pairs; None = FP32's best-accuracy threshold."""

    @model_validator(mode="after")
    def _some_data(self) -> EvaluationSpec:
        if self.images is None and self.pairs is None:
            raise ValueError("give evaluation images (a folder, a list file or a .npy), pairs, or both")
        if self.threshold is not None and self.pairs is None:
            raise ValueError("threshold is the same/different cut for pairs: give pairs or drop it")
        return self


class MixedSpec(_Strict):
    """How far the mixed-precision search may go to reach its own accuracy target.

    The search ranks nodes and measures itself on the tuning part of the calibration images and
    stops when the held-out check part (``packager.quantize.calibrated``) reaches
    ``target_mean_cosine + check_margin`` (mean cosine to FP32, reference mode)."""

    target_mean_cosine: Annotated[float, Field(gt=0.0, le=1.0)] = 0.995
    check_margin: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.001
    """Added to the target on the check images, which are few and look like calibration captures:
    on SFace (27 search steps, check parts of every 3rd/4th/5th/8th of 64 images) the mean cosine on
    the 240 unseen evaluation faces (72 of them bad captures) sat up to 0.00104 below the check
    figure (0.0005 on average, at most 0.0008 once the check figure passed 0.995)."""
    max_float_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.35
    """Of the candidate nodes. SFace needs 10 of 30 (all small, 0.2574 of FP32 in size) for the
    check part to reach 0.996; 0.25 stopped at 7 with 0.99588."""
    max_size_ratio: Annotated[float, Field(gt=0.0, le=1.0)] = 0.30


class TaskSpec(_Strict):
    """A task-level check (``packager.tasks``): ``check = "module:function"`` (or ``"file.py:function"``
    relative to this config) and optional bars by metric name, e.g. ``gates = { match_rate = 0.95 }``;
    the check says whether higher or lower is better for each of its metrics."""

    check: str
    gates: dict[str, float] = {}


class ModelSpec(_Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    source: Path
    input: InputSpec
    output: OutputSpec | None = None
    """Shorthand for one declared output (``name`` may be omitted: the model's first output)."""
    outputs: list[OutputSpec] = []
    """Every output worth declaring; undeclared outputs are validated as ``generic``."""
    calibration: CalibrationSpec | None = None
    evaluation: EvaluationSpec
    variants: Annotated[list[str], Field(min_length=1)] = ["fp16", "int8-dynamic", "int8-qdq", "mixed"]
    optional_variants: list[str] = []
    """Variants whose failure to convert or validate is reported but does not fail the build (they
    are left out of the bundle). Every other variant is required. Gates apply to all of them."""
    gates: GatesSpec = GatesSpec()
    task: TaskSpec | None = None
    mixed: MixedSpec = MixedSpec()

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, v: list[str]) -> list[str]:
        from packager.quantize import registry

        known = registry.names()
        unknown = [name for name in v if name not in known]
        if unknown:
            raise ValueError(f"unknown variant {unknown[0]!r}; one of: {', '.join(known)}")
        if len(set(v)) != len(v):
            raise ValueError(f"variants listed twice: {v}")
        return v

    @model_validator(mode="after")
    def _outputs_declared_once(self) -> ModelSpec:
        if self.output is not None and self.outputs:
            raise ValueError("use either `output` (one) or `outputs` (a list), not both")
        unnamed = [i for i, o in enumerate(self.outputs) if o.name is None]
        if unnamed:
            raise ValueError(f"outputs[{unnamed[0]}] needs a name (only the single `output` may omit it)")
        names = [o.name for o in self.outputs]
        if len(set(names)) != len(names):
            raise ValueError(f"outputs declared twice: {names}")
        return self

    @model_validator(mode="after")
    def _pairs_need_an_embedding(self) -> ModelSpec:
        embeddings = [o for o in self.declared_outputs if o.kind == "embedding"]
        if self.evaluation.pairs is not None and not embeddings:
            raise ValueError(
                "evaluation.pairs give verification metrics for embedding outputs, and no output is "
                'declared kind = "embedding": declare it, or drop the pairs and use evaluation.images'
            )
        return self

    @model_validator(mode="after")
    def _every_bar_judges_something(self) -> ModelSpec:
        """A bar the user set must gate something: a release config that silently drops one is a
        release that was not checked the way its author thinks."""
        declared = self.declared_outputs
        problems = []
        bars = {"model": self.gates.given(), **{f"output {o.name!r}": o.gates.given() for o in declared}}
        for where, given in bars.items():
            pair_gates = [g for g in ("max_auc_drop", "max_decision_flips") if g in given]
            if pair_gates and self.evaluation.pairs is None:
                problems.append(f"{where} gates {pair_gates} need evaluation.pairs (labelled pairs)")
        for out in declared:
            if "min_mask_iou" in out.gates.given() and out.mask_threshold is None:
                problems.append(f"output {out.name!r} gate min_mask_iou needs a mask_threshold")
        model_bars = self.gates.given()
        if "min_mask_iou" in model_bars and not any(o.mask_threshold is not None for o in declared):
            problems.append("gates.min_mask_iou needs an output with a mask_threshold")
        class_gates = [
            g for g in ("min_top1_agreement", "min_top5_agreement", "max_kl_divergence") if g in model_bars
        ]
        if class_gates and not any(o.kind in ("classification", "logits") for o in declared):
            problems.append(f"gates {class_gates} need an output declared kind classification or logits")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def declared_outputs(self) -> list[OutputSpec]:
        return list(self.outputs) if self.outputs else ([self.output] if self.output else [])

    def declared_by_name(self, outputs: Sequence[str]) -> dict[str, OutputSpec]:
        """The declared outputs by the model output each stands for; ``outputs`` are the model's output
        names in order (an unnamed declaration is the first output's)."""
        return {(d.name or outputs[0]): d for d in self.declared_outputs}

    @property
    def primary_output(self) -> str | None:
        """The output calibration choice and mixed precision optimise for: the first declared one
        (None = the model's first output)."""
        declared = self.declared_outputs
        return declared[0].name if declared else None

    @model_validator(mode="after")
    def _optional_are_variants(self) -> ModelSpec:
        unknown = [v for v in self.optional_variants if v not in self.variants]
        if unknown:
            raise ValueError(f"optional_variants {unknown} are not in variants {self.variants}")
        return self

    @model_validator(mode="after")
    def _calibration_when_needed(self) -> ModelSpec:
        from packager.quantize import registry

        needing = [v for v in self.variants if registry.get(v).needs_calibration]
        if needing and self.calibration is None:
            raise ValueError(f"variants {needing} need a [models.calibration] table with images")
        return self


DEFAULT_CACHE = ".packager-cache"


def is_url(value: str) -> bool:
    """A cache location written as an fsspec URL (``s3://bucket/prefix``) rather than a folder."""
    return "://" in value


class BuildSpec(_Strict):
    out: Path = Path("dist")
    cache: Path | str = Path(DEFAULT_CACHE)
    """The step cache: a folder (relative to the config's folder), or the fsspec URL of a cache that
    machines share (``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///mnt/ci-cache``; see
    :mod:`packager.remote_cache`). ``packager build --cache`` and then the ``PACKAGER_CACHE``
    environment variable override it (:func:`with_cache`)."""
    local_cache: Path | None = None
    """With a URL ``cache`` only: the folder on this machine where steps run and where the entries read
    from or written to the URL are kept (default ``.packager-cache`` next to the config)."""
    latency_runs: Annotated[int, Field(gt=0)] = 50
    latency_warmup: Annotated[int, Field(ge=0)] = 10
    threads: Annotated[int, Field(gt=0)] = 1

    @field_validator("cache", mode="before")
    @classmethod
    def _path_or_url(cls, v: object) -> object:
        """A URL stays text (``Path`` would fold its ``//``); anything else is a folder."""
        if isinstance(v, str) and not is_url(v):
            return Path(v)
        return v

    @model_validator(mode="after")
    def _local_cache_with_url(self) -> BuildSpec:
        if self.local_cache is not None and self.shared_cache is None:
            raise ValueError(
                "local_cache is only for a URL cache (s3://..., file:///...); with a folder cache, that "
                "folder is the local cache: remove local_cache"
            )
        return self

    @property
    def working_cache(self) -> Path:
        """The local folder steps run in (logs, last runs, entries): ``cache`` when it is a folder,
        else ``local_cache``."""
        if isinstance(self.cache, Path):
            return self.cache
        return self.local_cache or Path(DEFAULT_CACHE)

    @property
    def shared_cache(self) -> str | None:
        """The URL of the cache shared between machines, or None for a local cache only."""
        return self.cache if isinstance(self.cache, str) else None


class Config(_Strict):
    project: ProjectSpec
    models: Annotated[list[ModelSpec], Field(min_length=1)]
    build: BuildSpec = BuildSpec()
    targets: dict[str, dict[str, Any]] = {}
    """Each platform target's table (``[android]``...), as validated by that target's schema."""

    path: Path = Path("packager.toml")
    """Where the config was read from; every relative path resolved against its folder."""

    @model_validator(mode="after")
    def _unique_model_names(self) -> Config:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        return self

    def portable(self) -> dict[str, Any]:
        """The effective settings with paths relative to the config's folder, as the manifest records them.

        Absolute paths would make the same project hash differently in every clone.
        """
        base = self.path.parent.resolve()
        data = self.model_dump(mode="json", exclude={"path"})

        def relative(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: relative(v) for k, v in value.items()}
            if isinstance(value, list):
                return [relative(v) for v in value]
            if isinstance(value, str) and Path(value).is_absolute():
                return Path(os.path.relpath(value, base)).as_posix()
            return value

        return relative(data)

    def digest(self) -> str:
        """Hash of the effective settings (not the file bytes): reformatting the TOML changes nothing.

        Output and cache locations are left out: they do not change what is built.
        """
        data = self.portable()
        data["build"] = {k: v for k, v in data["build"].items() if k not in ("out", "cache", "local_cache")}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise ConfigError(self.path, [f"no model named {name!r}; models: {[m.name for m in self.models]}"])


def _resolve(base: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Make every path field absolute against the config's folder before validation."""
    for model in data.get("models", []) or []:
        if not isinstance(model, dict):
            continue
        if isinstance(model.get("source"), str):
            model["source"] = str((base / model["source"]).resolve())
        for table, key in (("calibration", "images"), ("evaluation", "pairs"), ("evaluation", "images")):
            sub = model.get(table)
            if isinstance(sub, dict) and isinstance(sub.get(key), str):
                sub[key] = str((base / sub[key]).resolve())
    build = data.setdefault("build", {})
    if isinstance(build, dict):
        for key, default in (("out", "dist"), ("cache", DEFAULT_CACHE)):
            value = build.get(key, default)
            if isinstance(value, str):
                build[key] = _resolve_location(base, value)
        if isinstance(build.get("cache"), str) and is_url(build["cache"]):
            local = build.get("local_cache", DEFAULT_CACHE)
            if isinstance(local, str):
                build["local_cache"] = str((base / local).resolve())
    return data


def _resolve_location(base: Path, value: str) -> str:
    """A folder against ``base``; a ``file://`` URL's relative path too; other URLs as given."""
    if not is_url(value):
        return str((base / value).resolve())
    scheme, _, rest = value.partition("://")
    if scheme in ("file", "local") and not rest.startswith("/"):
        return f"{scheme}://{(base / rest).resolve()}"
    return value


def with_cache(config: Config, value: str) -> Config:
    """``config`` with ``[build].cache`` replaced by ``value`` (``packager build --cache`` or the
    ``PACKAGER_CACHE`` variable): a folder (relative to the current directory) or a URL. With a URL,
    steps run in the configured local folder: ``local_cache``, the folder ``cache``, or the default."""
    build = config.build
    if is_url(value):
        local = build.working_cache if isinstance(build.cache, Path) else build.local_cache
        local = local or config.path.parent.resolve() / DEFAULT_CACHE
        update: dict[str, Any] = {"cache": _resolve_location(Path.cwd(), value), "local_cache": local}
    else:
        update = {"cache": Path(value).resolve(), "local_cache": None}
    return config.model_copy(update={"build": BuildSpec.model_validate({**build.model_dump(), **update})})


def model_field(name: str, field: str = "") -> str:
    """How an error names one model's table or field: ``[models] 'face_detector'.variants``, by the name
    the user gave the model (not its index in the list, which they would have to count)."""
    return f"[models] {name!r}" + (f".{field}" if field else "")


def _location(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    """A pydantic error location as the user reads the file: ``models.1.outputs.0.kind`` becomes
    ``[models] 'face_detector'.outputs[0].kind`` (``[models] #2`` for a model with no usable name)."""
    parts = list(loc)
    text = ""
    if len(parts) >= 2 and parts[0] == "models" and isinstance(parts[1], int):
        models = data.get("models")
        entry = models[parts[1]] if isinstance(models, list) and parts[1] < len(models) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        text = model_field(name) if isinstance(name, str) else f"[models] #{parts[1] + 1}"
        parts = parts[2:]
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(top level)"


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the table at ``loc`` (a pydantic error location in :class:`Config`) allows; empty when
    ``loc`` is not inside a model (a free-form table such as ``task.gates``)."""
    model: type[BaseModel] | None = Config
    for part in loc:
        if isinstance(part, int):  # an item of a list of tables
            continue
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return []
        model = _model_in(field.annotation)
    return [name for name in model.model_fields if name != "path"] if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds, through ``X | None`` and ``list[X]``; None for plain values."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is dict:  # keys are the user's (output names, metric names): no schema
        return None
    return next((m for a in get_args(annotation) if (m := _model_in(a)) is not None), None)


def _format_error(err: dict[str, Any], data: dict[str, Any]) -> str:
    """One line per pydantic error, located as :func:`_location` says; ``data`` is what was validated."""
    loc = _location(err["loc"], data)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        key = str(err["loc"][-1])
        import difflib  # error paths only: not on a no-op build's import path

        close = difflib.get_close_matches(key, _fields_at(err["loc"][:-1]), n=1)
        if close:
            return f"{loc}: unknown key; did you mean {close[0]!r}? (see README 'Configuration')"
        return f"{loc}: unknown key (check spelling; see README 'Configuration')"
    if err["type"] == "missing":
        return f"{loc}: required but missing"
    given = err.get("input")
    if isinstance(given, dict | list) or given is None:
        return f"{loc}: {msg}"
    return f"{loc}: {msg} (got {given!r})"


CORE_TABLES = ("project", "models", "build")


def parse_config(data: dict[str, Any], path: Path) -> Config:
    """Validate an already-parsed TOML document; all problems are reported together.

    Top-level tables other than the core's belong to platform targets (``[android]``, ``[ios]``):
    each is validated by its installed target's schema (``packager.target``).
    """
    from packager.target import parse_target_tables

    data = _resolve(path.parent.resolve(), copy.deepcopy(data))
    tables = {k: data.pop(k) for k in list(data) if k not in CORE_TABLES}
    data["path"] = str(path)
    problems: list[str] = []
    targets: dict[str, Any] = {}
    try:
        targets = {k: v.model_dump(mode="json") for k, v in parse_target_tables(tables, path).items()}
    except ConfigError as exc:
        problems += exc.problems
    try:
        config = Config.model_validate({**data, "targets": targets})
    except ValidationError as exc:
        problems = [_format_error(e, data) for e in exc.errors()] + problems
    if problems:
        raise ConfigError(path, problems)
    return config


def load_config(path: Path) -> Config:
    if not path.exists():
        raise ConfigError(path, ["config file not found (pass the path to your packager.toml)"])
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"TOML syntax error: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(path, ["not a UTF-8 text file; is this really packager.toml?"]) from None
    return parse_config(data, path)
