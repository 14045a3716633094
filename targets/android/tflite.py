"""ONNX -> TFLite with onnx2tf 1.29.24: the float conversion, the INT8 conversion, and what XNNPACK makes of them.

* :func:`convert_float` runs onnx2tf once for the ``saved_model`` (signature named after the ONNX input
  and outputs; the iOS target feeds it to coremltools, DESIGN §5.10) and the ``float32``/``float16``
  .tflite files.
* :func:`convert_int8` runs onnx2tf *again*, in its own run (DESIGN §5.24: a calibration run can switch
  onnx2tf's layout corrections off), on the model with its PRelu rewritten (:mod:`.prelu`), and keeps
  the full-integer file. Calibration tensors are the model's own input, [N, C, H, W] float32; onnx2tf
  wants them in the saved_model's layout in [0, 1] plus a mean/std it applies itself (§5.5):
  :func:`calibration_for_onnx2tf` maps one to the other so the model sees the same values.
* :func:`xnnpack_delegation` and :func:`host_latency` measure a .tflite in the real LiteRT interpreter
  with its default XNNPACK delegate, as an Android app runs it.

Every onnx2tf run works on a scratch copy of the .onnx (it rewrites its input in place, §5.1), with the
venv's ``bin`` on PATH for its ``onnxsim`` subprocess (§5.2) and, in its working directory, the
calibration sample file it would otherwise download even when given data (§5.3). Its console output
goes to the log at DEBUG; an op it cannot convert raises :class:`ConversionError` naming the op.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx

from packager.errors import ConversionError, first_line
from packager.results import Latency

log = logging.getLogger(__name__)

TOOL = "onnx2tf"
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
"""The file onnx2tf 1.29.24 downloads for any 4-D 3-channel input, even with calibration data given."""
IoDtype = Literal["float32", "int8"]
Layout = Literal["NCHW", "NHWC"]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --- running onnx2tf -----------------------------------------------------------------------------


@contextlib.contextmanager
def _onnx2tf_env(work: Path) -> Iterator[io.StringIO]:
    """cwd = ``work`` (with the sample file), the venv's bin first on PATH, stdout/stderr captured.

    Restores cwd and PATH on exit. Changes process-wide state: run one conversion at a time.
    """
    np.save(work / SAMPLE_FILE, np.zeros((20, 128, 128, 3), np.float32))
    old_cwd, old_path = os.getcwd(), os.environ.get("PATH", "")
    chatter = io.StringIO()
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), old_path])
    os.chdir(work)
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            yield chatter
    finally:
        os.chdir(old_cwd)
        os.environ["PATH"] = old_path
        log.debug("onnx2tf output:\n%s", _ANSI.sub("", chatter.getvalue()).strip())


def _failure(exc: BaseException, model: onnx.ModelProto, chatter: str, step: str) -> ConversionError:
    """One-line :class:`ConversionError` for an onnx2tf failure, naming the ONNX op when known."""
    node_name = getattr(exc, "onnx_op_name", None)
    op_type = next((n.op_type for n in model.graph.node if node_name and n.name == node_name), None)
    missing = re.match(r"No module named 'onnx2tf\.ops\.(\w+)'", str(exc))
    if missing:
        op_type = missing.group(1)
        problem = f"no converter for ONNX op {op_type}"
    elif isinstance(exc, SystemExit):
        errors = [ln for ln in _ANSI.sub("", chatter).splitlines() if ln.startswith("ERROR:")]
        problem = errors[-1].removeprefix("ERROR:").strip() if errors else f"exited with code {exc.code}"
    else:
        problem = f"{type(exc).__name__}: {first_line(exc)}"
    if op_type:
        problem = f"ONNX op {op_type}: {problem}"
    return ConversionError(
        step,
        TOOL,
        " ".join(problem.split()),
        f"replace or remove the {op_type or 'failing'} op before export, or drop the tflite runtime "
        "from [android].runtimes (the build log has onnx2tf's full output)",
        node=node_name,
    )


def _run_onnx2tf(onnx_path: Path, folder: Path, step: str, **options: object) -> float:
    """onnx2tf.convert on a scratch copy of ``onnx_path`` into ``folder``; returns seconds taken.

    Files are named ``model_float32.tflite`` and so on. Raises :class:`ConversionError`.
    """
    import onnx2tf

    work = folder.parent / f".{folder.name}-work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    work.mkdir(parents=True)
    scratch = work / "model.onnx"
    shutil.copyfile(onnx_path, scratch)
    model = onnx.load(str(onnx_path), load_external_data=False)
    start = time.perf_counter()
    try:
        with _onnx2tf_env(work) as chatter:
            onnx2tf.convert(
                input_onnx_file_path=str(scratch),
                output_folder_path=str(folder),
                output_signaturedefs=True,
                verbosity="info",
                **options,
            )
    except (Exception, SystemExit) as exc:
        raise _failure(exc, model, chatter.getvalue(), step) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return time.perf_counter() - start


# --- float ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloatConversion:
    """What :func:`convert_float` wrote."""

    saved_model: Path
    """TF SavedModel folder; signature ``serving_default`` with the ONNX input and output names."""
    float32: Path
    float16: Path
    """FP16 weights, dequantized to float32 at load (onnx2tf's ``_float16`` file); float32 I/O."""
    input_name: str
    input_layout: Layout
    """NCHW: the ONNX model's own layout (onnx2tf adds one TRANSPOSE); NHWC: onnx2tf's default."""
    seconds: float
    """Wall time of the onnx2tf run."""


def _input_names(model_path: Path) -> list[str]:
    model = onnx.load(str(model_path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def _layout_options(model_path: Path, layout: Layout) -> dict[str, object]:
    if layout == "NHWC":
        return {}
    return {"keep_ncw_or_nchw_or_ncdhw_input_names": _input_names(model_path)}


def convert_float(onnx_path: Path, out_dir: Path, layout: Layout = "NCHW") -> FloatConversion:
    """onnx2tf ``onnx_path`` into ``out_dir``: ``saved_model/``, ``float32.tflite``, ``float16.tflite``.

    ``layout`` is the .tflite input's: NCHW (default) keeps the ONNX input as it is, so an app feeds
    every runtime the same tensor and coremltools gets the ONNX layout. Raises
    :class:`ConversionError` naming the ONNX op onnx2tf could not convert.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = out_dir / "saved_model"
    seconds = _run_onnx2tf(onnx_path, folder, "tflite float", **_layout_options(onnx_path, layout))
    files = {}
    for kind in ("float32", "float16"):
        files[kind] = out_dir / f"{kind}.tflite"
        os.replace(folder / f"model_{kind}.tflite", files[kind])
    log.info("onnx2tf float conversion of %s took %.1f s", onnx_path.name, seconds)
    return FloatConversion(
        saved_model=folder,
        float32=files["float32"],
        float16=files["float16"],
        input_name=_input_names(onnx_path)[0],
        input_layout=layout,
        seconds=seconds,
    )


# --- INT8 -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Onnx2tfCalibration:
    """Calibration tensors as onnx2tf ``custom_input_op_name_np_data_path`` takes them."""

    values: np.ndarray
    """[N, ...] float32 in [0, 1], in the saved_model input's layout."""
    mean: np.ndarray
    """[1, 1, 1, 1] float32; onnx2tf feeds the model ``(values - mean) / std``."""
    std: np.ndarray


def calibration_for_onnx2tf(data: np.ndarray, layout: Layout) -> Onnx2tfCalibration:
    """Map model inputs ``data`` [N, C, H, W] float32 (exactly what the ONNX model consumes, e.g. RGB
    0..255) to onnx2tf's form: ``values = (data - lo) / (hi - lo)`` in ``layout``, ``mean = -lo / (hi -
    lo)``, ``std = 1 / (hi - lo)``, so ``(values - mean) / std == data`` (to float rounding) and
    calibration sees the model's real input. Raises :class:`ValueError` for a non-4-D or non-finite
    ``data``.
    """
    if data.ndim != 4 or not np.isfinite(data).all():
        raise ValueError(f"calibration data must be finite [N, C, H, W], got shape {list(data.shape)}")
    lo, hi = float(data.min()), float(data.max())
    span = hi - lo if hi > lo else 1.0
    values = (data.astype(np.float64) - lo) / span
    if layout == "NHWC":
        values = values.transpose(0, 2, 3, 1)
    shape = (1, 1, 1, 1)
    return Onnx2tfCalibration(
        values=np.ascontiguousarray(values, np.float32),
        mean=np.full(shape, -lo / span, np.float32),
        std=np.full(shape, 1.0 / span, np.float32),
    )


@dataclass(frozen=True)
class TensorQuantization:
    """One input or output of a quantized .tflite, by its signature (ONNX) name."""

    name: str
    dtype: str
    """Of the tensor the app reads or writes: ``float32`` (the model quantizes inside) or ``int8``."""
    shape: tuple[int, ...]
    scale: float | None
    """``real = scale * (q - zero_point)`` of the int8 tensor at this boundary: the I/O tensor itself
    when int8, else the QUANTIZE op's output (input) or the DEQUANTIZE op's input (output)."""
    zero_point: int | None


def _boundary(details: dict, ops: list[dict], as_input: bool) -> tuple[float | None, int | None]:
    """Scale and zero point of the int8 tensor next to one signature tensor (see TensorQuantization)."""
    index = int(details["index"])
    params = details["quantization_parameters"]
    if not np.issubdtype(details["dtype"], np.floating):
        return float(params["scales"][0]), int(params["zero_points"][0])
    op_name, side = ("QUANTIZE", "inputs") if as_input else ("DEQUANTIZE", "outputs")
    for op in ops:
        if op["op_name"] == op_name and index in [int(t) for t in op[side]]:
            other = op["outputs" if as_input else "inputs"][0]
            return op["_scale_zero"](int(other))
    return None, None


def io_quantization(tflite_path: Path) -> tuple[list[TensorQuantization], list[TensorQuantization]]:
    """(inputs, outputs) of ``tflite_path``'s ``serving_default`` signature with their int8 parameters.

    Per-tensor scale/zero point; ``None`` for a tensor no int8 tensor borders (a float model).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(tflite_path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )

    def scale_zero(tensor: int) -> tuple[float | None, int | None]:
        q = interpreter._get_tensor_details(tensor, 0)["quantization_parameters"]
        return (float(q["scales"][0]), int(q["zero_points"][0])) if len(q["scales"]) else (None, None)

    ops = [{**op, "_scale_zero": scale_zero} for op in interpreter._get_ops_details()]
    runner = interpreter.get_signature_runner()
    found: tuple[list[TensorQuantization], list[TensorQuantization]] = ([], [])
    for as_input, details, into in (
        (True, runner.get_input_details(), found[0]),
        (False, runner.get_output_details(), found[1]),
    ):
        for name, d in details.items():
            scale, zero = _boundary(d, ops, as_input)
            dtype = np.dtype(d["dtype"]).name
            into.append(TensorQuantization(name, dtype, tuple(int(s) for s in d["shape"]), scale, zero))
    return found


# --- XNNPACK ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delegation:
    """How LiteRT's default XNNPACK delegate took one .tflite (measured, not predicted)."""

    partitions: int
    """XNNPACK delegate nodes; each boundary between one and a CPU-kernel op costs a sync."""
    delegated_ops: int
    total_ops: int
    """Ops in the .tflite (the execution plan before delegation)."""
    outside: dict[str, int]
    """Ops left to LiteRT's own CPU kernels, by op name, with counts."""
    threads: int

    @property
    def full(self) -> bool:
        """Every op in one XNNPACK partition."""
        return self.partitions == 1 and self.delegated_ops == self.total_ops


def xnnpack_delegation(tflite_path: Path, threads: int) -> Delegation:
    """Load ``tflite_path`` in LiteRT with ``threads`` (its default XNNPACK delegate, as an app gets)
    and read the delegated graph: ``DELEGATE`` nodes are partitions; an original op belongs to the
    partition whose outputs it reaches, walking back from them to the partition's inputs. Raises
    :class:`ConversionError` when LiteRT cannot load the file.
    """
    interpreter = _interpreter(tflite_path, threads)
    ops = interpreter._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    original = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {int(t): op["index"] for op in original for t in op["outputs"]}
    covered: set[int] = set()
    for node in delegates:
        stop = {int(t) for t in node["inputs"]}
        todo = [int(t) for t in node["outputs"]]
        while todo:
            tensor = todo.pop()
            if tensor in stop or tensor not in producer or producer[tensor] in covered:
                continue
            covered.add(producer[tensor])
            todo += [int(t) for t in ops[producer[tensor]]["inputs"] if int(t) >= 0]
    outside: dict[str, int] = {}
    for op in original:
        if op["index"] not in covered:
            outside[op["op_name"]] = outside.get(op["op_name"], 0) + 1
    return Delegation(len(delegates), len(covered), len(original), outside, threads)


def _interpreter(tflite_path: Path, threads: int):  # -> ai_edge_litert.interpreter.Interpreter
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(tflite_path), num_threads=threads)
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise ConversionError(
            f"load {tflite_path.name}",
            "LiteRT",
            first_line(exc),
            "the converter wrote ops LiteRT lacks: drop this artifact",
        ) from None
    return interpreter


def host_latency(tflite_path: Path, threads: int, runs: int = 50, warmup: int = 5) -> Latency:
    """p50/p90 ms of ``invoke()`` on this host, XNNPACK with ``threads``, on one fixed random input
    of the model's own input dtype and shape (uniform [0, 1) for float, the full range for int8)."""
    from packager.validate.metrics import latency

    interpreter = _interpreter(tflite_path, threads)
    rng = np.random.default_rng(0)
    for d in interpreter.get_input_details():
        dtype = np.dtype(d["dtype"])
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max, d["shape"], endpoint=True).astype(dtype)
        else:
            value = rng.random(d["shape"]).astype(dtype)
        interpreter.set_tensor(d["index"], value)
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return latency(times, threads)
