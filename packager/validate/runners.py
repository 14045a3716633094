"""Host runners: the same artifact, run the same way every time, in a named numerics mode.

Every runner answers :class:`packager.validate.formats.Runner`; ``formats.runner_for`` picks one by
the artifact's file format.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from packager.errors import ConversionError, StepError, first_line
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


def ort_cause(exc: Exception, model: Path, label: str) -> str:
    """ORT's message without its C++ source location and signature, naming ``label``, not the file.

    The model's path is usually a step output in the cache, which means nothing to the user.
    """
    text = first_line(exc).replace(str(model), label)
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

    ``modes`` are the modes this file format gives (``packager.validate.formats.FORMATS``): an ``.ort``
    file has its QDQ groups fused at conversion, so it has no reference mode.

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
        modes: tuple[OrtMode, ...] = ("default", "reference"),
    ) -> None:
        import onnxruntime as ort

        self.label = label or model.name
        self.model = model
        self.modes = modes
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


ONNX2TF_OUTPUT_SPELLINGS: tuple[Callable[[str], str], ...] = (
    lambda name: name,
    lambda name: name.replace(":", "__"),
    lambda name: re.sub("^/", "wa/", name.replace(":", "__")),
    lambda name: re.sub("^/", "", name.replace(":", "__")),
)
"""The spellings an ONNX output name can have as a TFLite signature output.

onnx2tf 1.29.24 with ``output_signaturedefs=True`` names signature outputs after the ONNX outputs,
sanitized for TensorFlow: ``:`` becomes ``__`` and a leading ``/`` becomes ``wa/`` (or is dropped).
"""


def match_outputs(artifact: Sequence[str], onnx: Sequence[str], label: str) -> dict[str, str]:
    """``{artifact output name: ONNX output name}``, by name and never by position (DESIGN §5.25).

    A single output on both sides needs no name. Raises :class:`StepError` naming both lists when any
    output on either side is left without its one partner.
    """
    if len(artifact) == len(onnx) == 1:
        return {artifact[0]: onnx[0]}
    found: dict[str, str] = {}
    for name in onnx:
        spellings = {spell(name) for spell in ONNX2TF_OUTPUT_SPELLINGS}
        hits = [a for a in artifact if a in spellings]
        if len(hits) == 1 and hits[0] not in found:
            found[hits[0]] = name
    if len(found) != len(artifact) or len(found) != len(onnx):
        raise StepError(
            f"load {label}",
            f"the outputs of {label} ({', '.join(artifact)}) do not match the ONNX model's outputs "
            f"({', '.join(onnx)}); matching them by position could swap two outputs of the same shape",
            "convert with onnx2tf output_signaturedefs=True, which names the signature outputs after the "
            "ONNX outputs",
        )
    return found


def _channels_last(shape: Sequence[int]) -> tuple[int, ...]:
    """[N, C, *spatial] -> [N, *spatial, C], the layout onnx2tf gives 3-D and wider tensors."""
    return (shape[0], *shape[2:], shape[1]) if len(shape) >= 3 else tuple(shape)


def _same_dims(actual: Sequence[int], expected: Sequence[int]) -> bool:
    """Equal past the batch dimension; an expected dim <= 0 (symbolic in ONNX) matches anything."""
    return len(actual) == len(expected) and all(
        e <= 0 or a == e for a, e in zip(actual[1:], expected[1:], strict=True)
    )


class ConvertedRunner:
    """What every runner of a converted artifact (LiteRT, TensorFlow, Core ML) shares: fed one ONNX-layout
    float sample at a time (mobile artifacts have a fixed batch of 1), transposed to channels-last when
    the artifact's input is the channels-last form of the sample, and read back by ONNX output name in
    the ONNX layout (onnx2tf leaves 3-D and wider outputs channels-last). A subclass sets ``label``,
    ``input_shape``, ``onnx_names`` ({artifact output: ONNX output}), ``reference_shapes`` and ``fix``
    (what to do when an output's shape is wrong), and implements :meth:`_invoke`.
    """

    modes: tuple[OrtMode, ...] = ("default",)
    optimization_level: str | None = None
    optimization_fallback: str | None = None
    label: str
    input_shape: tuple[int, ...]
    onnx_names: dict[str, str]
    reference_shapes: dict[str, Sequence[int]]
    fix: str = "report the model to the converter; drop this artifact until it converts right"

    def _layout(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` [1, ...] in the artifact's input layout; :class:`StepError` when it fits neither."""
        if _same_dims(batch.shape, self.input_shape):
            return batch
        if _same_dims(_channels_last(batch.shape), self.input_shape):
            return np.moveaxis(batch, 1, -1)
        raise StepError(
            f"run {self.label}",
            f"{self.label} takes input {list(self.input_shape)}, which is neither the sample's "
            f"{list(batch.shape)} nor its channels-last form",
            "check that [models].input (size, layout, channels) matches the model",
        )

    def _feed(self, batch: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self._layout(batch), dtype=np.float32)

    def _invoke(self, feed: np.ndarray, index: int) -> dict[str, np.ndarray]:
        """The artifact's outputs by its own names for input number ``index`` (for errors)."""
        raise NotImplementedError

    def _float(self, name: str, value: np.ndarray) -> np.ndarray:
        """An output as float32 (a quantized runtime dequantizes here)."""
        return np.asarray(value, dtype=np.float32)

    def _onnx_value(self, name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
        """An artifact output as the ONNX output it stands for: float32, in the ONNX layout."""
        value = self._float(name, value)
        onnx_name = self.onnx_names[name]
        expected = self.reference_shapes.get(onnx_name)
        if expected is not None and not _same_dims(value.shape, expected):
            if not _same_dims(value.shape, _channels_last(expected)):
                raise StepError(
                    f"run {self.label}",
                    f"output {onnx_name!r} of {self.label} is {list(value.shape)}, the ONNX model's is "
                    f"{list(expected)} (nor its channels-last form): the conversion changed it",
                    self.fix,
                )
            value = np.moveaxis(value, -1, 1)
        return onnx_name, value

    def run_all(self, batch: np.ndarray, progress: ProgressFn | None = None) -> dict[str, np.ndarray]:
        """``{ONNX output: float32 [N, *onnx_output_shape[1:]]}`` for ``batch`` [N, *onnx_input[1:]]."""
        collected: dict[str, list[np.ndarray]] = {n: [] for n in self.onnx_names.values()}
        for i, sample in enumerate(batch):
            for name, value in self._invoke(self._feed(sample[None]), i).items():
                onnx_name, converted = self._onnx_value(name, value)
                collected[onnx_name].append(converted[0])
            if progress:
                progress(i + 1, len(batch))
        return {n: np.stack(v) for n, v in collected.items()}

    def time(self, sample: np.ndarray, runs: int, warmup: int) -> list[float]:
        """Seconds of each of ``runs`` calls on ``sample`` [*onnx_input_shape[1:]] after ``warmup`` calls."""
        feed = self._feed(sample[None])
        for _ in range(warmup):
            self._invoke(feed, 0)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self._invoke(feed, 0)
            times.append(time.perf_counter() - start)
        return times


def _affine(details: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, zero point) of a quantized TFLite tensor, shaped to broadcast against it; None if float."""
    if not np.issubdtype(details["dtype"], np.integer):
        return None
    params = details.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), np.float32)
    zeros = np.asarray(params.get("zero_points", []), np.float32)
    if scales.size == 0:  # an older model: the per-tensor pair only
        scale, zero = details.get("quantization", (0.0, 0))
        if not scale:
            return None
        scales, zeros = np.asarray([scale], np.float32), np.asarray([zero], np.float32)
    if scales.size > 1:  # per-axis
        shape = [1] * len(details["shape"])
        shape[int(params.get("quantized_dimension", 0))] = -1
        return scales.reshape(shape), zeros.reshape(shape)
    return scales, zeros


class TFLiteRunner(ConvertedRunner):
    """One LiteRT interpreter (``ai_edge_litert``), with its default delegates (XNNPACK) as an app gets.

    Fed and read on the ONNX model's terms, so every artifact is compared the same way: float inputs
    in the ONNX layout are quantized with the input tensor's own scale and zero point and transposed
    to the artifact's layout when its input shape is the channels-last form of the sample's; outputs
    are matched to ONNX names through the signature (:func:`match_outputs`), dequantized the same way,
    and transposed back when ``reference_shapes`` (the ONNX output shapes) say the ONNX layout is
    channels-first. Raises :class:`ConversionError` when LiteRT cannot load the file (a Flex op, say),
    :class:`StepError` when its outputs or input shape do not fit the ONNX model.
    """

    def __init__(
        self,
        model: Path,
        mode: OrtMode = "default",
        threads: int = 1,
        label: str | None = None,
        reference_names: Sequence[str] | None = None,
        reference_shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.label = label or model.name
        self.model = model
        self.mode = mode
        self.threads = threads
        try:
            self.interpreter = Interpreter(model_path=str(model), num_threads=threads)
            self.interpreter.allocate_tensors()
        except Exception as exc:  # LiteRT raises RuntimeError/ValueError with its own text
            raise ConversionError(
                f"load {self.label}",
                "LiteRT",
                f"cannot load {self.label}: {first_line(exc).replace(str(model), self.label)}",
                "the converter wrote ops the LiteRT interpreter lacks: drop this artifact or change the "
                "model so the converter emits builtin ops (the build log has the full message)",
            ) from None
        signatures = self.interpreter.get_signature_list()
        self._signature = None
        if signatures:
            key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
            self._signature = self.interpreter.get_signature_runner(key)
            inputs = self._signature.get_input_details()
            outputs = self._signature.get_output_details()
        else:  # no signature: the tensors' own names, still never their positions
            inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
            outputs = {d["name"]: d for d in self.interpreter.get_output_details()}
        if len(inputs) != 1:
            raise StepError(
                f"load {self.label}",
                f"{self.label} has {len(inputs)} inputs ({', '.join(inputs)}); packager feeds one",
                "export the model with a single image input",
            )
        self.input_name, self.input = next(iter(inputs.items()))
        self.input_shape = tuple(int(d) for d in self.input["shape"])
        self.outputs = outputs
        names = list(reference_names) if reference_names is not None else list(outputs)
        self.onnx_names = match_outputs(list(outputs), names, self.label)
        self.reference_shapes = dict(reference_shapes or {})

    def _feed(self, batch: np.ndarray) -> np.ndarray:
        """One ONNX-layout float sample [1, ...] as the artifact's input tensor wants it."""
        batch = self._layout(batch)
        affine = _affine(self.input)
        dtype = np.dtype(self.input["dtype"])
        if affine is None:
            return np.ascontiguousarray(batch, dtype=dtype)
        scale, zero = affine
        info = np.iinfo(dtype)
        quantized = np.round(batch.astype(np.float32) / scale) + zero
        return np.ascontiguousarray(np.clip(quantized, info.min, info.max).astype(dtype))

    def _call(self, feed: np.ndarray) -> dict[str, np.ndarray]:
        if self._signature is not None:
            return self._signature(**{self.input_name: feed})
        self.interpreter.set_tensor(self.input["index"], feed)
        self.interpreter.invoke()
        return {name: self.interpreter.get_tensor(d["index"]) for name, d in self.outputs.items()}

    def _invoke(self, feed: np.ndarray, index: int) -> dict[str, np.ndarray]:
        try:
            return self._call(feed)
        except Exception as exc:  # LiteRT raises RuntimeError/ValueError with its own text
            raise StepError(
                f"run {self.label}",
                f"LiteRT failed on input {index} (shape {list(feed.shape)}): {first_line(exc)}",
                "check that [models].input (size, layout, channels) matches the model",
            ) from None

    def _float(self, name: str, value: np.ndarray) -> np.ndarray:
        affine = _affine(self.outputs[name])
        if affine is not None:
            value = (value.astype(np.float32) - affine[1]) * affine[0]
        return value.astype(np.float32)
