"""INT8 .tflite: calibration, activation ranges, PReLU handling, and the ONNX names of the outputs.

:func:`convert_int8` makes an INT8 .tflite by one of :data:`INT8_METHODS`, always from its own onnx2tf
run (DESIGN §5.24). Calibration tensors are the ONNX model's own input samples [N, C, H, W] float32.
The default, ``float-prelu``: BatchNorms folded and Conv -> PRelu -> Conv pairs equalized (exact in
float), one float onnx2tf run, the TF converter's calibration with activation ranges reset at the
percentile cut closest to float on the calibration samples, and PRELU left in float (XNNPACK runs it
inside the same partition; its INT8 elementwise ops cost more than the float PRELU, §5.19).
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from packager.errors import ConversionError, DataError, StepError, UnknownName, first_line
from targets.android.config import DEFAULT_INT8_METHOD
from targets.android.prelu import equalize, rewrite_prelu
from targets.android.tflite import (
    TOOL,
    Delegation,
    IoDtype,
    Layout,
    TensorQuantization,
    _input_name,
    _interp,
    _layout_options,
    _run_onnx2tf,
    io_quantization,
    xnnpack_delegation,
)

log = logging.getLogger(__name__)


# --- INT8 -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Int8Method:
    """One way to make the INT8 .tflite."""

    name: str
    equalize: bool
    """Fold BatchNorms and equalize ``Conv -> PRelu -> Conv`` channel ranges first (prelu.equalize)."""
    rewrite_prelu: bool
    """Rewrite PRelu into ops XNNPACK takes in INT8 (prelu.rewrite_prelu)."""
    float_ops: tuple[str, ...]
    """TFLite ops left in float (DEQUANTIZE -> op -> QUANTIZE), which XNNPACK runs in the same partition."""
    summary: str


# SFace (bench/android_tflite.py, host XNNPACK, 1 thread; size vs the FP32 .onnx, cosine vs FP32 ONNX on
# 240 evaluation faces, p50 vs the FP32 .tflite):
#   onnx2tf        0.257  mean 0.9696 min 0.877  28 partitions (27 PRELU outside)  5.99x  138 s
#   float-prelu    0.258  mean 0.9952 min 0.983   1 partition, 122/122 ops         0.49x  125 s
#   prelu-rewrite  0.264  mean 0.9944 min 0.978   1 partition, 97/97 ops           0.53x   73 s
INT8_METHODS: dict[str, Int8Method] = {
    m.name: m
    for m in (
        Int8Method(
            "onnx2tf",
            equalize=False,
            rewrite_prelu=False,
            float_ops=(),
            summary="onnx2tf -oiqt -cind as is, min/max ranges (SFace: 28 XNNPACK partitions, int8 PRELU "
            "is not delegated)",
        ),
        Int8Method(
            "float-prelu",
            equalize=True,
            rewrite_prelu=False,
            float_ops=("PRELU",),
            summary="equalized, PRELU kept float, percentile ranges: the fastest on XNNPACK",
        ),
        Int8Method(
            "prelu-rewrite",
            equalize=True,
            rewrite_prelu=True,
            float_ops=(),
            summary="equalized, PRelu rewritten, percentile ranges: every op INT8, for INT8-only "
            "accelerators",
        ),
    )
}
PERCENTILES: tuple[float, ...] = (99.99, 99.995, 99.999)
"""Activation range cuts tried (percent of values inside, per tail); the one whose outputs are closest to
float on the calibration samples is kept. SFace: 99.995 (eval cosine 0.9952 vs 0.9949 and 0.9943)."""
CHECK_SAMPLES = 64
"""Calibration samples (about) the range cuts are compared on; with 16, SFace's pick was 99.999, the
worst of the three on the evaluation images."""
_BINS = 8192


@dataclass(frozen=True)
class Onnx2tfCalibration:
    """Calibration tensors as onnx2tf ``custom_input_op_name_np_data_path`` takes them."""

    values: np.ndarray
    """[N, ...] float32 in [0, 1], in the saved_model input's layout."""
    mean: np.ndarray
    """[1, 1, 1, 1] float32; onnx2tf feeds the model ``(values - mean) / std``."""
    std: np.ndarray


def calibration_for_onnx2tf(data: np.ndarray, layout: Layout) -> Onnx2tfCalibration:
    """Map model inputs ``data`` [N, C, H, W] float32 (what the ONNX model consumes, e.g. RGB 0..255)
    to onnx2tf's form (§5.5): ``values = (data - lo) / (hi - lo)`` in ``layout``, ``mean = -lo / (hi -
    lo)``, ``std = 1 / (hi - lo)``, so ``(values - mean) / std == data`` up to float rounding.
    Raises :class:`ValueError` for data that is not finite [N, C, H, W].
    """
    if data.ndim != 4 or not np.isfinite(data).all():
        raise ValueError(f"calibration data must be finite [N, C, H, W], got shape {list(data.shape)}")
    lo, hi = float(data.min()), float(data.max())
    span = hi - lo if hi > lo else 1.0
    values = (data.astype(np.float64) - lo) / span
    if layout == "NHWC":
        values = values.transpose(0, 2, 3, 1)
    return Onnx2tfCalibration(
        np.ascontiguousarray(values, np.float32),
        np.full((1, 1, 1, 1), -lo / span, np.float32),
        np.full((1, 1, 1, 1), 1.0 / span, np.float32),
    )


@dataclass(frozen=True)
class Int8Conversion:
    """What :func:`convert_int8` wrote, and how XNNPACK takes it."""

    path: Path
    method: str
    io_dtype: IoDtype
    input_layout: Layout
    inputs: tuple[TensorQuantization, ...]
    outputs: tuple[TensorQuantization, ...]
    calibration_samples: int
    percentile: float | None
    """Activation range cut kept (None: onnx2tf's min/max)."""
    candidates: dict[str, float]
    """Mean output cosine to float on the calibration samples, per percentile tried."""
    prelu_rewritten: int
    equalized_pairs: int
    delegation: Delegation
    seconds: float
    """Wall time of the whole conversion (onnx2tf run included)."""


def _calibration(calibration: np.ndarray | Path, onnx_path: Path) -> np.ndarray:
    data = np.load(calibration) if isinstance(calibration, Path) else calibration
    model = onnx.load(str(onnx_path), load_external_data=False)
    name = _input_name(onnx_path)
    dims = next(i for i in model.graph.input if i.name == name).type.tensor_type.shape.dim
    wanted = [d.dim_value for d in dims][1:]
    if data.ndim != len(dims) or any(w > 0 and w != s for w, s in zip(wanted, data.shape[1:], strict=False)):
        raise DataError(
            str(calibration) if isinstance(calibration, Path) else "calibration tensors",
            f"shape {list(data.shape)} does not fit input {name!r} [N, {', '.join(map(str, wanted))}]",
            "pass the model's own input samples, preprocessed as the ONNX model consumes them",
        )
    return np.ascontiguousarray(data, np.float32)


def _converter_error(exc: BaseException) -> ConversionError:
    fix = "use INT8 method 'onnx2tf', or drop int8 from [android].tflite_precisions"
    return ConversionError("tflite int8", "TFLite converter", " ".join(first_line(exc).split()), fix)


def _outputs(model: bytes | Path, samples: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Signature outputs of a float-I/O model on each sample of ``samples`` [N, ...]."""
    runner = _interp(model).get_signature_runner()
    name = next(iter(runner.get_input_details()))
    return [{k: v.astype(np.float64) for k, v in runner(**{name: s[None]}).items()} for s in samples]


def _calibrate(saved_model: Path, data: np.ndarray) -> bytes:
    """Float .tflite with TFLite's min/max calibration statistics on every activation tensor."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample[None]] for sample in data)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_calibrate_only = True  # TF 2.19; the path QuantizationDebugger uses
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return converter.convert()


def _ranged(calibrated: bytes, data: np.ndarray) -> Callable[[float], bytes]:
    """Histogram every calibrated tensor over ``data`` (8192 bins on its min/max); returns a function
    giving the calibrated model with each range cut to ``percentile`` per tail (a range that holds 0
    keeps it: the zero point must be exact)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(calibrated, 0))
    spans = {
        i: (float(t.quantization.min[0]), float(t.quantization.max[0]))
        for i, t in enumerate(model.subgraphs[0].tensors)
        if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1
    }
    spans = {i: s for i, s in spans.items() if s[1] > s[0]}
    hists = {i: np.zeros(_BINS, np.int64) for i in spans}
    interpreter = _interp(calibrated, keep=True)
    index = interpreter.get_input_details()[0]["index"]
    for sample in data:
        interpreter.set_tensor(index, sample[None])
        interpreter.invoke()
        for i, (lo, hi) in spans.items():
            hists[i] += np.histogram(interpreter.get_tensor(i), bins=_BINS, range=(lo, hi))[0]

    def with_ranges(percentile: float) -> bytes:
        cut = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(calibrated, 0))
        tail = (100.0 - percentile) / 100.0
        for i, (lo, hi) in spans.items():
            share = np.cumsum(hists[i]) / max(hists[i].sum(), 1)
            edges = np.linspace(lo, hi, _BINS + 1)
            new_lo = edges[np.searchsorted(share, tail)]
            new_hi = edges[min(np.searchsorted(share, 1.0 - tail) + 1, _BINS)]
            q = cut.subgraphs[0].tensors[i].quantization
            q.min = [float(min(max(lo, new_lo), 0.0) if lo <= 0 else max(lo, new_lo))]
            q.max = [float(max(min(hi, new_hi), 0.0) if hi >= 0 else min(hi, new_hi))]
        builder = flatbuffers.Builder(0)
        builder.Finish(cut.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    return with_ranges


def _quantize(calibrated: bytes, float_ops: tuple[str, ...]) -> bytes:
    """Full INT8 (float I/O) from a calibrated model; ``float_ops`` stay float."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    return convert.mlir_quantize(
        calibrated,
        input_data_type=tf.float32,
        output_data_type=tf.float32,
        denylisted_ops=list(float_ops) or None,
    )


def _cosine(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Mean over outputs of the cosine of flattened values (``a`` and ``b`` share keys)."""
    scores = [
        float(a[k].ravel() @ b[k].ravel() / (np.linalg.norm(a[k]) * np.linalg.norm(b[k]) + 1e-30)) for k in a
    ]
    return float(np.mean(scores))


def _onnx_outputs(onnx_path: Path, sample: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    values = session.run(None, {session.get_inputs()[0].name: sample})
    return {o.name: v.astype(np.float64) for o, v in zip(session.get_outputs(), values, strict=True)}


def _signature_names(model: bytes, onnx_path: Path, sample: np.ndarray, layout: Layout) -> bytes:
    """``model`` with its signature outputs renamed after the ONNX outputs: each is matched to the ONNX
    output of its shape (or that shape channels-last) it is closest to (cosine) on ``sample`` [1, C, H,
    W], run in onnxruntime. Raises :class:`StepError` unless that is one-to-one (§5.25: never by
    position; onnx2tf's saved_model says ``output_0``...)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    feed = sample if layout == "NCHW" else np.ascontiguousarray(sample.transpose(0, 2, 3, 1))
    ours, theirs = _outputs(model, feed)[0], _onnx_outputs(onnx_path, sample)

    def closeness(key: str, name: str) -> float | None:
        value, ref = ours[key], theirs[name]
        if ref.ndim >= 3 and value.shape != ref.shape:
            ref = np.moveaxis(ref, 1, -1)
        return _cosine({0: value}, {0: ref}) if value.shape == ref.shape else None

    # onnx2tf numbers the saved_model's outputs in the ONNX graph's output order: take that when every
    # pair fits by shape and the values agree; INT8 noise can make a value-only match ambiguous when
    # outputs share a shape (YuNet's cls_8 and obj_8).
    onnx_names = list(theirs)
    by_index = {f"output_{i}": name for i, name in enumerate(onnx_names)}
    names: dict[str, str] = {}
    # Checked on the mean, not per output: a sparse map (YuNet's obj_16, ~0 on most frames) can come
    # out all zero in INT8 on one sample, cosine 0, and still be the right output.
    agreement = [closeness(key, name) for key, name in by_index.items()] if set(by_index) == set(ours) else []
    if agreement and None not in agreement and float(np.mean(agreement)) > 0.5:  # type: ignore[arg-type]
        names = by_index
    else:
        for key in ours:
            fits = {name: c for name in theirs if (c := closeness(key, name)) is not None}
            if fits:
                names[key] = max(fits, key=fits.get)  # type: ignore[arg-type]
    if sorted(names.values()) != sorted(theirs) or len(names) != len(ours):
        raise StepError(
            "tflite int8",
            f"cannot match the INT8 outputs ({', '.join(ours)}) to the ONNX outputs ({', '.join(theirs)})",
            "give every model output its own shape or values",
        )
    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    for output in tree.signatureDefs[0].outputs:
        output.name = names[output.name.decode()].encode()
    builder = flatbuffers.Builder(0)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _int8_onnx2tf(onnx_path: Path, data: np.ndarray, work: Path, layout: Layout) -> bytes:
    """onnx2tf -oiqt -cind: its ``_full_integer_quant`` file (float I/O)."""
    calib = calibration_for_onnx2tf(data, layout)
    np.save(work / "calibration.npy", calib.values)
    folder = work / "onnx2tf"
    _run_onnx2tf(
        onnx_path,
        folder,
        "tflite int8",
        output_integer_quantized_tflite=True,
        custom_input_op_name_np_data_path=[
            [_input_name(onnx_path), str(work / "calibration.npy"), calib.mean, calib.std]
        ],
        input_quant_dtype="float32",
        output_quant_dtype="float32",
        **_layout_options(onnx_path, layout),
    )
    if not (folder / "model_full_integer_quant.tflite").exists():
        raise ConversionError("tflite int8", TOOL, "wrote no full-integer file", "see the build log")
    return (folder / "model_full_integer_quant.tflite").read_bytes()


def _int8_ranged(
    onnx_path: Path, data: np.ndarray, work: Path, method: Int8Method, layout: Layout
) -> tuple[bytes, dict[str, object]]:
    """Equalize / rewrite, onnx2tf (float only), calibrate, cut ranges at the best of PERCENTILES,
    quantize. Returns the model (float I/O) and facts for the record."""
    facts: dict[str, object] = {"equalized_pairs": 0, "prelu_rewritten": 0}
    source = onnx_path
    if method.equalize:
        eq = equalize(source, work / "equalized.onnx", data)
        source, facts["equalized_pairs"] = eq.path, eq.pairs
    if method.rewrite_prelu:
        rw = rewrite_prelu(source, work / "rewritten.onnx")
        source, facts["prelu_rewritten"] = rw.path, rw.nodes
    folder = work / "onnx2tf"
    _run_onnx2tf(source, folder, "tflite int8", **_layout_options(onnx_path, layout))
    feed = data if layout == "NCHW" else np.ascontiguousarray(data.transpose(0, 2, 3, 1))
    try:
        calibrated = _calibrate(folder, feed)
        with_ranges = _ranged(calibrated, feed)
        checks = feed[:: max(1, len(feed) // CHECK_SAMPLES)]
        floats = _outputs(calibrated, checks)
        scores, models = {}, {}
        for percentile in PERCENTILES:
            models[percentile] = _quantize(with_ranges(percentile), method.float_ops)
            quantized = _outputs(models[percentile], checks)
            scores[percentile] = float(
                np.mean([_cosine(q, f) for q, f in zip(quantized, floats, strict=True)])
            )
    except (RuntimeError, ValueError) as exc:
        raise _converter_error(exc) from None
    best = max(scores, key=scores.get)
    facts |= {"percentile": best, "candidates": {str(p): round(s, 6) for p, s in scores.items()}}
    log.info("INT8 range cut %s kept; mean cosine to float per cut: %s", best, facts["candidates"])
    return models[best], facts


def convert_int8(
    onnx_path: Path,
    calibration: np.ndarray | Path,
    out_dir: Path,
    method: str = DEFAULT_INT8_METHOD,
    io_dtype: IoDtype = "float32",
    layout: Layout = "NCHW",
    threads: int = 4,
) -> Int8Conversion:
    """Write ``out_dir/int8.tflite`` from ``onnx_path`` by ``method`` (a key of :data:`INT8_METHODS`).

    ``calibration``: the model's input samples [N, C, H, W] float32 (or a .npy of them), preprocessed
    exactly as the ONNX model consumes them. ``io_dtype``: float32 (default: the app feeds the same
    tensor as to the FP32 model; QUANTIZE/DEQUANTIZE run inside XNNPACK) or int8 (the app quantizes
    with :attr:`Int8Conversion.inputs`' scale and zero point). ``threads``: for the XNNPACK
    partition count recorded. Raises :class:`UnknownName`, :class:`DataError` (calibration shape),
    :class:`ConversionError` (onnx2tf or the TFLite converter failed).
    """
    if method not in INT8_METHODS:
        raise UnknownName("INT8 method", method, list(INT8_METHODS))
    spec = INT8_METHODS[method]
    data = _calibration(calibration, onnx_path)
    start = time.perf_counter()
    work = out_dir / ".int8-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        if spec.name == "onnx2tf":
            model = _int8_onnx2tf(onnx_path, data, work, layout)
            facts: dict[str, object] = {}
        else:
            model, facts = _int8_ranged(onnx_path, data, work, spec, layout)
        model = _signature_names(model, onnx_path, data[:1], layout)
        if io_dtype == "int8":
            import tensorflow as tf
            from tensorflow.lite.python.util import modify_model_io_type

            model = modify_model_io_type(model, tf.int8, tf.int8)
        path = out_dir / "int8.tflite"
        path.write_bytes(model)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    inputs, outputs = io_quantization(path)
    delegation = xnnpack_delegation(path, threads)
    seconds = time.perf_counter() - start
    log.info("INT8 (%s) in %.1f s: %s", method, seconds, delegation)
    return Int8Conversion(
        path=path,
        method=method,
        io_dtype=io_dtype,
        input_layout=layout,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        calibration_samples=len(data),
        percentile=facts.get("percentile"),
        candidates=dict(facts.get("candidates", {})),
        prelu_rewritten=int(facts.get("prelu_rewritten", 0)),
        equalized_pairs=int(facts.get("equalized_pairs", 0)),
        delegation=delegation,
        seconds=seconds,
    )
