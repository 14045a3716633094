"""Which host runtime runs an artifact, chosen by its file format, and why one cannot run here.

The facts live in :data:`FORMATS` (one row per file suffix); :func:`cannot_run_here` decides whether
this host can run a file; :func:`runner_for` loads it behind the :class:`Runner` protocol, so
validation measures every artifact the same way (DESIGN §1).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from packager.errors import PackagerError, StepError
from packager.results import OrtMode
from packager.validate.runners import OrtRunner, ProgressFn, TFLiteRunner

SAVED_MODEL = "saved_model"
"""The format key of a TensorFlow SavedModel folder (it has no suffix of its own)."""


class Runner(Protocol):
    """One loaded artifact on this host, compared with the ONNX reference on the ONNX model's terms."""

    @property
    def label(self) -> str:
        """Names the artifact in errors ("int8 of model m"), never the cache path."""
        ...

    @property
    def modes(self) -> tuple[OrtMode, ...]:
        """The accuracy modes this runtime gives this artifact (DESIGN §4)."""
        ...

    @property
    def optimization_level(self) -> str | None:
        """The onnxruntime graph optimization level it runs at; None for other runtimes."""
        ...

    @property
    def optimization_fallback(self) -> str | None:
        """Why a higher onnxruntime level was not used; None when none failed, or not onnxruntime."""
        ...

    def run_all(self, batch: np.ndarray, progress: ProgressFn | None = None) -> dict[str, np.ndarray]:
        """Every output, by the ONNX model's output name, laid out as the ONNX model lays it out:
        ``{name: float32 [N, *onnx_output_shape[1:]]}`` for ``batch`` [N, *onnx_input_shape[1:]]."""
        ...

    def time(self, sample: np.ndarray, runs: int, warmup: int) -> list[float]:
        """Seconds per run of one sample [*onnx_input_shape[1:]], after ``warmup`` runs."""
        ...


class NotRunnable(PackagerError):
    """This host cannot run the artifact: the caller records ``not_validated_reason`` instead of numbers."""

    def __init__(self, label: str, reason: str) -> None:
        self.label = label
        self.not_validated_reason = reason
        super().__init__(f"{label} not validated on this host: {reason}")


@dataclass(frozen=True)
class ArtifactFormat:
    suffix: str
    runtime: str
    """What runs it on the host: a key of ``_RUNNERS``, or a runtime packager cannot drive (yet)."""
    modes: tuple[OrtMode, ...]
    """The accuracy modes that runtime gives files of this format (DESIGN §4)."""
    platforms: tuple[str, ...] = ()
    """``sys.platform`` values the runtime runs on; empty for any."""
    elsewhere: str = ""
    """The reason recorded on other platforms; ``{host}`` is this host's name."""


FORMATS: dict[str, ArtifactFormat] = {
    f.suffix: f
    for f in (
        ArtifactFormat(".onnx", "onnxruntime", ("default", "reference")),
        # convert_onnx_models_to_ort (Fixed style, arm or amd64) bakes QDQ groups into QLinearConv,
        # QGemm...: loading with optimizations off cannot undo that, so an .ort has no float-QDQ
        # reference mode; its source .onnx gives those numbers.
        ArtifactFormat(".ort", "onnxruntime", ("default",)),
        # The LiteRT interpreter has one set of kernels (XNNPACK by default), as on the phone.
        ArtifactFormat(".tflite", "LiteRT", ("default",)),
        # coremltools loads the spec anywhere but predicts only through macOS's Core ML framework.
        ArtifactFormat(
            ".mlpackage",
            "Core ML",
            ("default",),
            platforms=("darwin",),
            elsewhere="Core ML prediction needs macOS (coremltools cannot run .mlpackage on {host})",
        ),
        # A folder, found by its saved_model.pb (artifact_format): the stand-in measured for an
        # .mlpackage where Core ML cannot run (packager.validate.saved_model_runner).
        ArtifactFormat(SAVED_MODEL, "TensorFlow", ("default",)),
    )
}

_HOSTS = {"linux": "Linux", "win32": "Windows", "darwin": "macOS"}

Shapes = Mapping[str, Sequence[int]]
RunnerFactory = Callable[[Path, OrtMode, int, str, Sequence[str] | None, Shapes | None], Runner]

_RUNNERS: dict[str, RunnerFactory] = {
    "onnxruntime": lambda path, mode, threads, label, _names, _shapes: OrtRunner(
        path, mode, threads, label=label, modes=FORMATS[path.suffix.lower()].modes
    ),
    "LiteRT": lambda path, mode, threads, label, names, shapes: TFLiteRunner(
        path, mode, threads, label, reference_names=names, reference_shapes=shapes
    ),
    "TensorFlow": lambda path, mode, threads, label, names, shapes: _saved_model_runner()(
        path, mode, threads, label, names, shapes
    ),
    "Core ML": lambda path, mode, threads, label, names, shapes: _coreml_runner()(
        path, mode, threads, label, names, shapes
    ),
}


def _saved_model_runner() -> type[Runner]:
    # TensorFlow and coremltools load only when such an artifact is run.
    from packager.validate.saved_model_runner import SavedModelRunner

    return SavedModelRunner


def _coreml_runner() -> type[Runner]:
    from packager.validate.coreml_runner import CoreMLRunner

    return CoreMLRunner


def artifact_format(path: Path) -> ArtifactFormat | None:
    """By suffix; a suffix-less folder holding ``saved_model.pb`` is a SavedModel."""
    if not path.suffix and (path / "saved_model.pb").is_file():
        return FORMATS[SAVED_MODEL]
    return FORMATS.get(path.suffix.lower())


def cannot_run_here(path: Path, platform: str = sys.platform) -> str | None:
    """Why this host cannot run ``path`` (to record instead of numbers), or None when it can."""
    found = artifact_format(path)
    if found is None:
        runnable = ", ".join(s for s, f in FORMATS.items() if f.runtime in _RUNNERS)
        return f"no host runtime runs {path.suffix or path.name!r} files (packager runs {runnable})"
    if found.platforms and platform not in found.platforms:
        return found.elsewhere.format(host=_HOSTS.get(platform, platform))
    if found.runtime not in _RUNNERS:
        return f"packager has no {found.runtime} runner yet: {found.suffix} artifacts are not run on the host"
    return None


def modes_for(path: Path) -> tuple[OrtMode, ...]:
    """The accuracy modes ``path``'s format has; empty for a format packager does not know."""
    found = artifact_format(path)
    return found.modes if found is not None else ()


def runner_for(
    path: Path,
    mode: OrtMode,
    *,
    threads: int = 1,
    label: str | None = None,
    reference_names: Sequence[str] | None = None,
    reference_shapes: Shapes | None = None,
) -> Runner:
    """The runner for ``path``'s format, loaded in ``mode``.

    ``reference_names`` (the ONNX model's output names, in order) and ``reference_shapes`` (their
    ONNX shapes; the batch dim is not compared) let a converted artifact's outputs be renamed and laid
    out as the ONNX model's. Raises :class:`NotRunnable` when this host cannot run it, and
    :class:`StepError` when its format has no such mode.
    """
    shown = label or path.name
    reason = cannot_run_here(path)
    if reason is not None:
        raise NotRunnable(shown, reason)
    found = artifact_format(path)
    assert found is not None  # cannot_run_here said so
    if mode not in found.modes:
        raise StepError(
            f"load {shown}",
            f"{found.suffix} artifacts have no {mode!r} mode (modes: {', '.join(found.modes)})",
            f"validate {found.suffix} artifacts in {' or '.join(found.modes)} mode",
        )
    return _RUNNERS[found.runtime](path, mode, threads, shown, reference_names, reference_shapes)
