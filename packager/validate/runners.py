"""Host runners: the same artifact, run the same way every time, in a named numerics mode."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from packager.errors import ConversionError, StepError
from packager.results import OrtMode

ProgressFn = Callable[[int, int], None]

OPTIMIZATION_LEVELS: tuple[str, ...] = ("all", "extended", "basic")
"""onnxruntime graph optimization levels tried in order in ``default`` mode.

ORT's level-2/3 fusions have bugs on some valid graphs (seen: SimplifiedLayerNormFusion fails on an
FP16 PP-OCRv4 recognizer at ENABLE_ALL, "Attempting to get index by a name which does not exist",
while EXTENDED loads and runs). An app sets the same level in its SessionOptions, so the level that
worked is recorded with the results rather than failing the artifact.
"""


def _session_options(mode: OrtMode, level: str, threads: int):  # -> ort.SessionOptions
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    options.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }["disabled" if mode == "reference" else level]
    return options


_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_ORT_SOURCE = re.compile(r"/onnxruntime_src/\S+:\d+\s*")
_CPP_SIGNATURE = re.compile(r"(?:\w+\s+)?(?:[\w]+::)+[\w~]+\([^()]*\)\s*(?:const\s*)?")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def ort_cause(exc: Exception, model: Path, label: str) -> str:
    """ORT's message without its C++ source location and signature, naming ``label``, not the file.

    The model's path is usually a step output in the cache, which means nothing to the user.
    """
    text = _first_line(exc).replace(str(model), label)
    text = _CPP_SIGNATURE.sub("", _ORT_SOURCE.sub("", _ORT_PREFIX.sub("", text)))
    return " ".join(text.split())


class OrtRunner:
    """One onnxruntime CPU session.

    ``reference`` mode disables graph optimizations, so QuantizeLinear/DequantizeLinear pairs run as
    separate float ops instead of being fused into x86 integer kernels; that is the numerics mobile
    INT8 kernels (ARM, XNNPACK) follow, so mobile gates are judged in this mode (DESIGN §4).

    ``default`` mode loads at ORT_ENABLE_ALL and, if ORT's optimizer cannot load the model, at the
    next lower level (:data:`OPTIMIZATION_LEVELS`); :attr:`optimization_level` says which level runs
    and :attr:`optimization_fallback` why a higher one did not.

    ``label`` names the artifact in errors ("fp16 of model face_embedder"): paths of step outputs
    point into the cache, which tells a user nothing. Raises :class:`ConversionError` when no level
    loads, :class:`StepError` when ``output`` is not an output of the model.
    """

    def __init__(
        self,
        model: Path,
        mode: OrtMode = "default",
        threads: int = 1,
        output: str | None = None,
        label: str | None = None,
    ) -> None:
        import onnxruntime as ort

        self.label = label or model.name
        self.model = model
        levels = ("disabled",) if mode == "reference" else OPTIMIZATION_LEVELS
        failures: list[tuple[str, str]] = []
        for level in levels:
            try:
                self.session = ort.InferenceSession(
                    str(model), _session_options(mode, level, threads), providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # ORT raises several pybind exception types
                failures.append((level, ort_cause(exc, model, self.label)))
                continue
            self.optimization_level = level
            break
        else:
            causes = sorted({cause for _, cause in failures})
            raise ConversionError(
                f"load {self.label}",
                "onnxruntime",
                f"cannot load {self.label} at any graph optimization level: {'; '.join(causes)}",
                "the converter that made this artifact wrote a graph onnxruntime refuses: drop this variant "
                "from `variants` or list it in `optional_variants`, and report the model to the converter "
                "(the build log has the full message)",
            )
        self.optimization_fallback = (
            f"onnxruntime cannot load it at level {', '.join(level for level, _ in failures)} "
            f"({failures[0][1]})"
            if failures
            else None
        )
        self.mode = mode
        self.threads = threads
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        if output is not None and output not in outputs:
            # Falling back to another output would score the wrong tensor and still look fine.
            raise StepError(
                f"load {self.label}",
                f"{self.label} has no output {output!r} (outputs: {', '.join(outputs)})",
                "fix [models].output.name",
            )
        self.output_name = output or outputs[0]

    def run(self, batch: np.ndarray, progress: ProgressFn | None = None) -> np.ndarray:
        """The selected output only (``output``, else the first): float32 [N, *output_shape[1:]]."""
        return self.run_all(batch, progress, only=self.output_name)[self.output_name]

    def run_all(
        self, batch: np.ndarray, progress: ProgressFn | None = None, only: str | None = None
    ) -> dict[str, np.ndarray]:
        """Every output (or ``only`` one), sample by sample (mobile artifacts have batch 1):
        ``{name: float32 [N, *output_shape[1:]]}``."""
        names = [only] if only else [o.name for o in self.session.get_outputs()]
        collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for i, sample in enumerate(batch):
            try:
                values = self.session.run(names, {self.input_name: sample[None]})
            except Exception as exc:  # ORT raises several pybind exception types
                raise StepError(
                    f"run {self.label}",
                    f"onnxruntime failed on input {i} (shape {list(sample[None].shape)}): "
                    f"{ort_cause(exc, self.model, self.label)}",
                    "check that [models].input (size, layout, channels) matches the model",
                ) from None
            for name, value in zip(names, values, strict=True):
                collected[name].append(value[0])
            if progress:
                progress(i + 1, len(batch))
        return {n: np.stack(v).astype(np.float32) for n, v in collected.items()}

    def time(self, sample: np.ndarray, runs: int, warmup: int) -> list[float]:
        feed = {self.input_name: sample[None]}
        for _ in range(warmup):
            self.session.run([self.output_name], feed)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.session.run([self.output_name], feed)
            times.append(time.perf_counter() - start)
        return times
