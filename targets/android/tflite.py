"""ONNX -> TFLite with onnx2tf 1.29.24 (float), and what LiteRT and XNNPACK make of a .tflite.

* :func:`convert_float`: one onnx2tf run for the ``saved_model`` (the iOS target feeds it to
  coremltools, DESIGN §5.10) and the ``float32``/``float16`` .tflite files.
* INT8 files are made in :mod:`targets.android.tflite_int8`, from their own onnx2tf run (§5.24).
* :func:`io_quantization`: a .tflite's signature tensors with their INT8 parameters.
* :func:`xnnpack_delegation`, :func:`host_latency`: a .tflite in the real LiteRT interpreter with its
  default XNNPACK delegate, as an Android app runs it.

Every onnx2tf run works on a scratch copy of the .onnx (it rewrites its input in place, §5.1), with the
venv's ``bin`` on PATH for its ``onnxsim`` subprocess (§5.2) and, in its working directory, the sample
file it would otherwise download even when given data (§5.3). Its console output goes to the log at
DEBUG; an op it cannot convert raises :class:`ConversionError` naming the ONNX op. The .tflite input
keeps the ONNX layout (NCHW, one TRANSPOSE inside) unless ``layout="NHWC"``, so an app feeds every
runtime the same tensor. onnx2tf's saved_model names its signature outputs ``output_0``, ... (its own
.tflite files use the ONNX names); the INT8 files here get the ONNX names back, matched by value.
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
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx

from packager.errors import ConversionError, DataError, first_line
from packager.results import Latency

log = logging.getLogger(__name__)

TOOL = "onnx2tf"
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
"""The file onnx2tf 1.29.24 downloads for any 4-D 3-channel input, even with calibration data given."""
IoDtype = Literal["float32", "int8"]
Layout = Literal["NCHW", "NHWC"]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# --- running onnx2tf ------------------------------------------------------------------------------


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
        # TF's own deprecation warnings, raised inside onnx2tf, are silenced: its text is logged.
        with (
            contextlib.redirect_stdout(chatter),
            contextlib.redirect_stderr(chatter),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            yield chatter
    finally:
        os.chdir(old_cwd)
        os.environ["PATH"] = old_path
        log.debug("onnx2tf output:\n%s", _ANSI.sub("", chatter.getvalue()).strip())


def _failure(exc: BaseException, model: onnx.ModelProto, chatter: str, step: str) -> ConversionError:
    """One-line :class:`ConversionError` for an onnx2tf failure, naming the ONNX op when known."""
    node = getattr(exc, "onnx_op_name", None)
    op_type = next((n.op_type for n in model.graph.node if node and n.name == node), None)
    missing = re.match(r"No module named 'onnx2tf\.ops\.(\w+)'", str(exc))
    if missing:
        op_type = missing.group(1)
        problem = "onnx2tf has no converter for it"
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
        f"replace the {op_type or 'failing'} op in the model, or drop tflite from [android].runtimes "
        "(the build log has onnx2tf's output)",
        node=node,
    )


def _run_onnx2tf(onnx_path: Path, folder: Path, step: str, **options: object) -> float:
    """onnx2tf.convert a scratch copy of ``onnx_path`` into ``folder`` (files ``model_*.tflite``) with
    signature defs; returns its wall time in seconds. Raises :class:`ConversionError`.

    Keras' name counters are reset first: onnx2tf builds a Keras model whose layer names (``model_5``,
    ``tf.math.add_8``) count up per process and land in the .tflite's tensor names, so a second run in
    one process (tests, a step order the scheduler picks) wrote other bytes (measured: two runs of one
    model in one process gave two files; after ``clear_session`` both equal a fresh process's).
    """
    import onnx2tf
    import tf_keras  # what onnx2tf's tf.keras is: it sets TF_USE_LEGACY_KERAS=1

    tf_keras.backend.clear_session()

    work = folder.parent / f".{folder.name}-work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copyfile(onnx_path, work / "model.onnx")
    model = onnx.load(str(onnx_path), load_external_data=False)
    start = time.perf_counter()
    try:
        with _onnx2tf_env(work) as chatter:
            onnx2tf.convert(
                input_onnx_file_path=str(work / "model.onnx"),
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


def _input_name(model_path: Path) -> str:
    """The ONNX model's one graph input (initializers listed as inputs left out)."""
    model = onnx.load(str(model_path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    if len(names) != 1:
        raise DataError(model_path, f"has {len(names)} inputs ({', '.join(names)})", "export one image input")
    return names[0]


def _layout_options(model_path: Path, layout: Layout) -> dict[str, object]:
    return {"keep_ncw_or_nchw_or_ncdhw_input_names": [_input_name(model_path)]} if layout == "NCHW" else {}


# --- float ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloatConversion:
    """What :func:`convert_float` wrote."""

    saved_model: Path
    """TF SavedModel folder; signature ``serving_default``, input named as in ONNX, outputs
    ``output_0``, ``output_1``, ... (onnx2tf 1.29.24's naming)."""
    float32: Path
    float16: Path
    """FP16 weights dequantized at load (onnx2tf's ``_float16`` file); float32 I/O."""
    input_name: str
    input_layout: Layout
    seconds: float
    """Wall time of the onnx2tf run."""


def convert_float(onnx_path: Path, out_dir: Path, layout: Layout = "NCHW") -> FloatConversion:
    """onnx2tf ``onnx_path`` into ``out_dir``: ``saved_model/``, ``float32.tflite``, ``float16.tflite``.

    Raises :class:`ConversionError` naming the ONNX op onnx2tf could not convert.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = out_dir / "saved_model"
    seconds = _run_onnx2tf(onnx_path, folder, "tflite float", **_layout_options(onnx_path, layout))
    for kind in ("float32", "float16"):
        os.replace(folder / f"model_{kind}.tflite", out_dir / f"{kind}.tflite")
    log.info("onnx2tf float conversion of %s took %.1f s", onnx_path.name, seconds)
    return FloatConversion(
        folder,
        out_dir / "float32.tflite",
        out_dir / "float16.tflite",
        _input_name(onnx_path),
        layout,
        seconds,
    )


def _interp(model: bytes | Path, threads: int = 1, delegates: bool = False, keep: bool = False):
    """A LiteRT Interpreter, allocated; ``delegates``: with the default XNNPACK; ``keep``: every tensor."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    source = {"model_path": str(model)} if isinstance(model, Path) else {"model_content": model}
    interpreter = Interpreter(
        **source,
        num_threads=threads,
        experimental_op_resolver_type=resolver,
        experimental_preserve_all_tensors=keep,
    )
    interpreter.allocate_tensors()
    return interpreter


# --- tensors ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorQuantization:
    """One input or output of a quantized .tflite, by its signature (ONNX) name."""

    name: str
    dtype: str
    """Of the tensor the app reads or writes: ``float32`` (quantized inside) or ``int8``."""
    shape: tuple[int, ...]
    scale: float | None
    """``real = scale * (q - zero_point)`` of the int8 tensor at this boundary: the I/O tensor itself if
    int8, else the QUANTIZE op's output (input) or the DEQUANTIZE op's input (output)."""
    zero_point: int | None


def io_quantization(tflite_path: Path) -> tuple[list[TensorQuantization], list[TensorQuantization]]:
    """(inputs, outputs) of ``tflite_path``'s first signature with their INT8 parameters (see
    :class:`TensorQuantization`); scale and zero point None where no int8 tensor borders one."""
    interpreter = _interp(tflite_path)
    ops = interpreter._get_ops_details()  # the op list; LiteRT has no public API for it

    def params(index: int) -> tuple[float | None, int | None]:
        q = interpreter._get_tensor_details(index, 0)["quantization_parameters"]
        return (float(q["scales"][0]), int(q["zero_points"][0])) if len(q["scales"]) else (None, None)

    def boundary(index: int, as_input: bool) -> tuple[float | None, int | None]:
        if params(index)[0] is not None:
            return params(index)
        kind, side, other = (
            ("QUANTIZE", "inputs", "outputs") if as_input else ("DEQUANTIZE", "outputs", "inputs")
        )
        op = next((op for op in ops if op["op_name"] == kind and index in list(op[side])), None)
        return params(int(op[other][0])) if op is not None else (None, None)

    runner = interpreter.get_signature_runner()
    found: tuple[list[TensorQuantization], list[TensorQuantization]] = ([], [])
    for as_input, details, into in (
        (True, runner.get_input_details(), found[0]),
        (False, runner.get_output_details(), found[1]),
    ):
        for name, d in details.items():
            shape = tuple(int(s) for s in d["shape"])
            into.append(
                TensorQuantization(name, np.dtype(d["dtype"]).name, shape, *boundary(d["index"], as_input))
            )
    return found


# --- XNNPACK --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delegation:
    """How LiteRT's default XNNPACK delegate took one .tflite (measured, not predicted)."""

    partitions: int
    """XNNPACK delegate nodes; each boundary with a CPU-kernel op costs a sync (DESIGN §5.17)."""
    delegated_ops: int
    total_ops: int
    """Ops in the .tflite before delegation."""
    outside: dict[str, int]
    """Ops left to LiteRT's own kernels, by op name, with counts."""
    threads: int

    @property
    def full(self) -> bool:
        """Every op in one XNNPACK partition."""
        return self.partitions == 1 and self.delegated_ops == self.total_ops


def _loaded(tflite_path: Path, threads: int):  # -> ai_edge_litert.interpreter.Interpreter
    try:
        return _interp(tflite_path, threads, delegates=True)
    except (RuntimeError, ValueError) as exc:
        raise ConversionError(
            f"load {tflite_path.name}",
            "LiteRT",
            first_line(exc),
            "the converter wrote ops LiteRT lacks: drop this artifact",
        ) from None


def xnnpack_delegation(tflite_path: Path, threads: int) -> Delegation:
    """Load ``tflite_path`` as an app does (LiteRT, default XNNPACK delegate, ``threads``) and read the
    delegated graph: each ``DELEGATE`` node is a partition; an original op belongs to the partition
    whose outputs it reaches walking back to the partition's inputs. Raises :class:`ConversionError`
    when LiteRT cannot load the file.
    """
    ops = _loaded(tflite_path, threads)._get_ops_details()  # original ops, then DELEGATE nodes
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


def host_latency(tflite_path: Path, threads: int, runs: int = 50, warmup: int = 5) -> Latency:
    """p50/p90 ms of ``invoke()`` on this host (LiteRT, default XNNPACK, ``threads``) on one fixed
    random input of the model's dtype and shape (uniform [0, 1) for float, full range for int8)."""
    from packager.validate.metrics import latency

    interpreter = _loaded(tflite_path, threads)
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
