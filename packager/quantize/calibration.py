"""Shared static-quantization machinery: calibrate once, then build QDQ models from the ranges.

ORT's ``quantize_static`` recalibrates on every call; the mixed-precision search builds many
models from one calibration, so the two halves are split here (same ORT classes underneath).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from packager.validate.runners import ProgressFn

if TYPE_CHECKING:  # config imports the recipe registry: no import back at run time
    from packager.config import CalibrationSpec

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)


class ArrayReader:
    """ORT CalibrationDataReader over preprocessed tensors, one sample per call (batch is fixed to 1)."""

    def __init__(self, input_name: str, data: np.ndarray, progress: ProgressFn | None = None) -> None:
        self.input_name = input_name
        self.data = data
        self.index = 0
        self.progress = progress

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.data):
            return None
        sample = self.data[self.index][None].astype(np.float32)
        self.index += 1
        if self.progress:
            self.progress(self.index, len(self.data))
        return {self.input_name: sample}

    def __len__(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class QdqSettings:
    per_channel: bool
    reduce_range: bool
    activation_type: str = "uint8"
    weight_type: str = "int8"

    @classmethod
    def from_spec(cls, spec: CalibrationSpec) -> QdqSettings:
        return cls(per_channel=spec.per_channel, reduce_range=spec.reduce_range)


def preprocess_for_quantization(reference: Path, output: Path, *, fold: bool = True) -> Path:
    """ORT's recommended pre-pass (symbolic shapes, and with ``fold`` its basic graph optimizations:
    BatchNormalization folded into the Conv before it, constants folded); measured to help static
    QDQ on SFace (DESIGN §5.13).

    ``fold=False`` keeps the graph's nodes as they are. Per-tensor weight quantization needs that:
    folding scales each output channel of a Conv by its BatchNorm gain, which widens the spread of
    channel ranges one scale must cover (see :mod:`packager.quantize.dynamic`). Per-channel QDQ
    gives each channel its own scale, so there folding costs nothing and saves the float BatchNorm.

    Unnamed nodes then get names (``<op_type>_<index>``, made unique): the quantizer excludes nodes
    by name and sensitivity matches the float and QDQ graphs by name, and an empty name in an exclude
    list would keep *every* unnamed node in float.
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(reference), str(output), skip_optimization=not fold, skip_symbolic_shape=False)
    model = onnx.load(str(output))
    if name_unnamed_nodes(model.graph):
        onnx.save(model, str(output))
    return output


def name_unnamed_nodes(graph: onnx.GraphProto) -> int:
    """Give each unnamed node of ``graph`` a unique deterministic name; return how many were named."""
    taken = {n.name for n in graph.node if n.name}
    named = 0
    for index, node in enumerate(graph.node):
        if node.name:
            continue
        name, suffix = f"{node.op_type}_{index}", 0
        while name in taken:
            suffix += 1
            name = f"{node.op_type}_{index}_{suffix}"
        node.name = name
        taken.add(name)
        named += 1
    return named


def calibrate(
    model: Path, data: np.ndarray, spec: CalibrationSpec, progress: ProgressFn | None = None
) -> dict[str, object]:
    """Run the calibrator once; return per-tensor ranges for each candidate setting, by label.

    Percentile calibration collects one histogram per tensor; every candidate percentile is then a
    cheap recomputation over the same histograms, so a search costs one calibration pass.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[spec.method]
    candidates = spec.percentiles() if spec.method == "percentile" else [None]
    extra: dict[str, object] = {"percentile": candidates[0]} if candidates[0] is not None else {}
    input_name = onnx.load(str(model), load_external_data=False).graph.input[0].name
    ranges: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="packager-calib-") as tmp:
        calibrator = create_calibrator(
            model,
            [],
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=method,
            extra_options=extra,
            providers=["CPUExecutionProvider"],
        )
        # The calibrators print progress to stdout; keep the CLI's output ours, and the text in the log.
        chatter = io.StringIO()
        with contextlib.redirect_stdout(chatter):
            calibrator.collect_data(ArrayReader(input_name, data, progress))
            for percentile in candidates:
                if percentile is None:
                    ranges[spec.method] = calibrator.compute_data()
                    continue
                # ORT keeps the percentile on its histogram collector; same histograms, new cut.
                calibrator.collector.percentile = percentile
                ranges[f"percentile {percentile}"] = calibrator.compute_data()
        log.debug("calibrator output: %s", chatter.getvalue().strip())
        del calibrator
    return ranges


@dataclass(frozen=True)
class CalibrationChoice:
    label: str
    ranges: object
    path: Path
    """The QDQ model built from the chosen ranges (every node in INT8)."""
    scores: dict[str, float]
    """Mean cosine to FP32 on the probe inputs for every candidate, reference mode."""


def choose_calibration(
    model: Path,
    candidates: dict[str, object],
    settings: QdqSettings,
    probe: np.ndarray,
    expected: np.ndarray,
    work: Path,
    output: str | None = None,
) -> CalibrationChoice:
    """Build one QDQ model per candidate and keep the closest to FP32 on the probe inputs.

    The probe is the calibration set, never the evaluation pairs, so the reported accuracy stays honest.
    ``expected`` holds FP32's values of ``output`` (the configured output; None = the first).
    """
    from packager.validate.metrics import cosine_stats
    from packager.validate.runners import OrtRunner

    paths: dict[str, Path] = {}
    scores: dict[str, float] = {}
    for i, (label, ranges) in enumerate(candidates.items()):
        paths[label] = build_qdq(model, ranges, settings, work / f"candidate-{i}.onnx")
        scores[label] = cosine_stats(
            expected, OrtRunner(paths[label], "reference", output=output).run(probe)
        ).mean
        log.info("calibration %s: mean cosine %.5f on %d probe inputs", label, scores[label], len(probe))
    best = max(scores, key=lambda label: scores[label])  # first of equals wins, as candidates are ordered
    return CalibrationChoice(best, candidates[best], paths[best], scores)


class _RootToDebug(logging.Filter):
    """ORT's quantizer logs through the root logger (one WARNING per rank-1 BatchNorm weight, INFO per
    tensor); keep those records, but at DEBUG under this module's logger, so the CLI shows ours only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "root":
            return True
        log.debug("onnxruntime.quantization: %s", record.getMessage())
        return False


@contextlib.contextmanager
def quiet_ort_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers = list(root.handlers)
    quiet = _RootToDebug()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def quantizable_nodes(model: Path, output: str | None = None) -> list[str]:
    """Names of nodes the QDQ quantizer would touch (its own op registry), in graph order.

    With ``output`` (a graph output name), only the nodes that influence it: a multi-output model's
    other heads cannot change the scored output, so ranking or keeping them in float buys nothing.
    Unnamed nodes are left out (they cannot be excluded by name; see :func:`preprocess_for_quantization`).
    Raises ValueError when ``output`` is not an output of the model.
    """
    import onnx
    from onnxruntime.quantization.registry import QDQRegistry

    graph = onnx.load(str(model), load_external_data=False).graph
    nodes = [n for n in graph.node if n.name and n.op_type in QDQRegistry]
    if output is None:
        return [n.name for n in nodes]
    if output not in {o.name for o in graph.output}:
        raise ValueError(f"{model.name} has no output {output!r}")
    upstream = feeding_nodes(graph, output)
    return [n.name for n in nodes if n.name in upstream]


def feeding_nodes(graph: onnx.GraphProto, tensor: str) -> set[str]:
    """Names of the nodes ``tensor`` depends on (its producer and everything upstream of it)."""
    producer = {out: node for node in graph.node for out in node.output if out}
    seen: set[int] = set()
    names: set[str] = set()
    pending = [tensor]
    while pending:
        node = producer.get(pending.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        names.add(node.name)
        pending.extend(t for t in node.input if t)
    return names


def build_qdq(
    model: Path, ranges, settings: QdqSettings, output: Path, exclude: list[str] | None = None
) -> Path:
    """QDQ-quantize ``model`` with precomputed ranges, keeping ``exclude`` nodes in float."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    qtypes = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    loaded = load_model_with_shape_infer(model)
    with quiet_ort_logging():
        quantizer = QDQQuantizer(
            loaded,
            settings.per_channel,
            settings.reduce_range,
            qtypes[settings.weight_type],
            qtypes[settings.activation_type],
            ranges,
            [],
            list(exclude or []),
            sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),
            {},
        )
        quantizer.quantize_model()
    quantizer.model.save_model_to_file(str(output), False)
    return output
