"""The example's minimal artifact set made by hand: the third-party tool calls alone, each one timed.

This is the baseline a packager build is compared with ("running the same tools by hand takes N s
for the minimal set", DESIGN §5 pitfall 18). For every model of a config (default: the faceid
example, YuNet ``face_detector`` and SFace ``face_embedder``) it runs, without importing packager or
targets, the calls a person would type to get the same files, with the arguments packager passes:

===========================  ==========================================================================
line                         call (and the packager code whose arguments it copies)
===========================  ==========================================================================
``onnx prepare``             drop initializers listed as graph inputs (§5.14), ``onnx.version_converter``
                             to opset 13 (§5.12), ``onnx.shape_inference`` -- ``packager/prepare.py``
``onnx2tf float``            ``onnx2tf.convert``: saved_model + float32/float16 .tflite, NCHW input kept,
                             ``output_signaturedefs=True`` -- ``targets/android/tflite.py``
``onnx2tf int8 (-oiqt)``     its own ``onnx2tf.convert`` run (§5.24) with ``-oiqt -cind``, float I/O --
                             ``targets/android/tflite_int8.py`` (method ``onnx2tf``)
``coremltools fp16``         ``ct.convert`` of the float run's saved_model to an FP16 ML Program (§5.10)
                             and its save -- ``targets/ios/coreml.py``
``ort quant_pre_process``    ``quant_pre_process`` (§5.13) -- ``packager/quantize/calibration.py``
``ort quantize_static``      static QDQ, per channel, U8 activations / S8 weights, the config's method --
                             ``packager/quantize/calibrated.py``
``ort convert fp32/int8``    ``convert_onnx_models_to_ort``, Runtime style, ``--target_platform arm``
                             (§5.9) -- ``targets/ort_mobile/ort_format.py``
===========================  ==========================================================================

Why it is the fair counterpart: the same inputs (the model as packager prepares it, the config's
calibration images preprocessed the same way -- a few lines of OpenCV/numpy reimplementing
``packager/preprocess.py``), the same arguments and the same workarounds (onnx2tf on a scratch copy
in a folder holding the sample file it would download, the venv's ``bin`` on PATH for its
``onnxsim``: §5.1-5.3), and the one saved_model shared by TFLite and Core ML. Every call gets its own
folder under ``scratch``. Timed: the tool call itself (and, for Core ML, reading the saved_model's
signature, which packager times too), not staging its inputs; the heavy imports are timed once, as
their own line, as a packager build pays them once.

Where it differs from a build, by design:

* INT8 .tflite: the raw tool (``onnx2tf -oiqt -cind``, min/max ranges, no PReLU handling: every op
  INT8), as packager's INT8 method ``onnx2tf`` calls it and as pitfall 18's figure was measured. A build's
  default method ``float-prelu`` instead equalizes Conv->PRelu->Conv pairs, runs onnx2tf float on that
  graph, calibrates with the TF converter, tries three percentile cuts and keeps PRELU float, because
  the raw file runs SFace 6x slower than FP32 on XNNPACK (§5.17, §5.19).
* Static QDQ: one ``quantize_static`` with one setting (the lowest configured percentile for SFace,
  min/max for YuNet) on the same 48 tuning images (every 4th of 64 is held out), where packager
  calibrates once and builds and scores one QDQ model per configured percentile.

What packager does beyond these calls, none of it timed here: checking the prepared model against
the source, validating every artifact (ONNX, ORT, TFLite, the Core ML stand-in) against FP32 on the
evaluation data with per-output gates and the task check, the XNNPACK partition count and host
speed check of the INT8 .tflite, the other variants (FP16 and dynamic INT8 ONNX, mixed precision
with its sensitivity search), deterministic outputs (canonical .ort, stable Core ML manifest, SavedModel
fingerprint), the Kotlin/Swift loader codegen and its compile checks, the bundles, the report and the
step cache.

Run after ``python examples/faceid/prepare_data.py``: ``python bench/raw_tools.py [--config
packager.toml] [--scratch DIR]``; several minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "examples" / "faceid" / "packager.toml"

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
"""What onnx2tf 1.29.24 downloads for a 4-D 3-channel input even with data given (§5.3)."""
QDQ_OPSET = 13
"""Per-channel QDQ needs it (§5.12); packager upgrades every model below it."""
CHECK_EVERY = 4
"""packager holds every 4th calibration image out of static QDQ calibration (quantize/calibrated.py)."""
DEFAULTS = {"count": 200, "method": "percentile", "percentile": [99.99, 99.995, 99.999]}
"""packager's CalibrationSpec defaults for what a config leaves out."""


@dataclass(frozen=True)
class Timing:
    """One tool call."""

    model: str
    tool: str
    seconds: float


@dataclass(frozen=True)
class ModelJob:
    """What the config says about one model, resolved to paths."""

    name: str
    source: Path
    size: tuple[int, int]
    """(height, width)."""
    channels: str
    mean: np.ndarray
    std: np.ndarray
    layout: str
    resize: str
    images: list[Path]
    """The calibration images: the first ``count`` of the folder, sorted by name."""
    method: str
    percentile: float | None


# --- config and data ------------------------------------------------------------------------------


def _jobs(config: Path) -> tuple[list[ModelJob], str]:
    """The config's models (in its order) and the iOS deployment target."""
    data = tomllib.loads(config.read_text())
    base = config.parent
    jobs = []
    for model in data["models"]:
        spec = model["input"]
        calib = {**DEFAULTS, **model["calibration"]}
        folder = base / calib["images"]
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        cuts = calib["percentile"] if isinstance(calib["percentile"], list) else [calib["percentile"]]
        jobs.append(
            ModelJob(
                name=model["name"],
                source=base / model["source"],
                size=(int(spec["size"][0]), int(spec["size"][1])),
                channels=spec.get("channels", "RGB"),
                mean=np.asarray(spec.get("mean", [0.0, 0.0, 0.0]), np.float32),
                std=np.asarray(spec.get("std", [1.0, 1.0, 1.0]), np.float32),
                layout=spec.get("layout", "NCHW"),
                resize=spec.get("resize", "stretch"),
                images=images[: int(calib["count"])],
                method=calib["method"],
                percentile=min(cuts) if calib["method"] == "percentile" else None,
            )
        )
    return jobs, data.get("ios", {}).get("deployment_target", "iOS15")


def _resize(image: np.ndarray, h: int, w: int, mode: str) -> np.ndarray:
    """packager/preprocess.py's resize: stretch, center-crop, or letterbox (centred, black)."""
    import cv2

    if mode == "center-crop":
        scale = max(h / image.shape[0], w / image.shape[1])
        size = (max(w, round(image.shape[1] * scale)), max(h, round(image.shape[0] * scale)))
        scaled = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        top, left = (scaled.shape[0] - h) // 2, (scaled.shape[1] - w) // 2
        return scaled[top : top + h, left : left + w]
    if image.shape[:2] == (h, w):
        return image
    if mode == "letterbox":
        scale = min(h / image.shape[0], w / image.shape[1])
        nw = max(1, min(w, round(image.shape[1] * scale)))
        nh = max(1, min(h, round(image.shape[0] * scale)))
        canvas = np.zeros((h, w, *image.shape[2:]), image.dtype)
        top, left = (h - nh) // 2, (w - nw) // 2
        canvas[top : top + nh, left : left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        return canvas
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def _tensors(job: ModelJob) -> np.ndarray:
    """The calibration images as the ONNX model consumes them, [N, C, H, W] (or NHWC) float32."""
    import cv2

    out = []
    for path in job.images:
        image = _resize(cv2.imread(str(path), cv2.IMREAD_COLOR), *job.size, job.resize)
        if job.channels == "RGB":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        elif job.channels == "GRAY":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[:, :, None]
        tensor = (image.astype(np.float32) - job.mean) / job.std
        out.append(tensor.transpose(2, 0, 1) if job.layout == "NCHW" else tensor)
    return np.ascontiguousarray(np.stack(out), np.float32)


def _input(model_path: Path) -> tuple[str, list[int]]:
    """The one image input (initializers listed as inputs left out): name and shape."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    inits = {t.name for t in model.graph.initializer}
    value = next(i for i in model.graph.input if i.name not in inits)
    return value.name, [d.dim_value for d in value.type.tensor_type.shape.dim]


# --- timing ---------------------------------------------------------------------------------------


class Timer:
    """Runs and times tool calls, printing one line per call to ``out``.

    Each call's console output (Python's, TF's C++ log, tqdm bars) goes to ``<its folder>/tool.log``:
    file descriptors 1 and 2 are pointed at it, so logging handlers the tools create keep a valid stream.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.rows: list[Timing] = []

    @contextlib.contextmanager
    def call(self, model: str, tool: str, folder: Path) -> Iterator[None]:
        folder.mkdir(parents=True, exist_ok=True)
        with _console_to(folder / "tool.log"):
            start = time.perf_counter()
            yield
            seconds = time.perf_counter() - start
        self.rows.append(Timing(model, tool, seconds))
        print(f"{model:<16}{tool:<26}{seconds:>9.1f}", file=self.out, flush=True)


@contextlib.contextmanager
def _console_to(path: Path) -> Iterator[None]:
    """Point file descriptors 1 and 2 at ``path`` for the block, then back."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with path.open("w") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


# --- the tool calls -------------------------------------------------------------------------------


def _prepare(job: ModelJob, folder: Path, timer: Timer) -> Path:
    """packager's prepare step, by hand: initializer inputs dropped, opset >= 13, shapes inferred."""
    import onnx

    out = folder / "fp32.onnx"
    with timer.call(job.name, "onnx prepare", folder):
        model = onnx.load(str(job.source))
        inits = {t.name for t in model.graph.initializer}
        keep = [i for i in model.graph.input if i.name not in inits]
        del model.graph.input[:]
        model.graph.input.extend(keep)
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        if opset < QDQ_OPSET:
            model = onnx.version_converter.convert_version(model, QDQ_OPSET)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=False, data_prop=True)
        onnx.save(model, str(out))
    return out


def _onnx2tf(model: Path, folder: Path, timer: Timer, job: str, tool: str, **options: object) -> Path:
    """``onnx2tf.convert`` as ``targets/android/tflite.py::_run_onnx2tf`` calls it: on a scratch copy in
    ``folder/work`` (cwd, holding the sample file), venv bin on PATH; writes ``folder/onnx2tf``."""
    import onnx2tf

    work, written = folder / "work", folder / "onnx2tf"
    work.mkdir(parents=True)
    keep_nchw = [_input(model)[0]]
    shutil.copyfile(model, work / "model.onnx")
    np.save(work / SAMPLE_FILE, np.zeros((20, 128, 128, 3), np.float32))
    old_cwd, old_path = os.getcwd(), os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), old_path])
    os.chdir(work)
    try:
        with timer.call(job, tool, folder):
            onnx2tf.convert(
                input_onnx_file_path=str(work / "model.onnx"),
                output_folder_path=str(written),
                output_signaturedefs=True,
                verbosity="info",
                keep_ncw_or_nchw_or_ncdhw_input_names=keep_nchw,
                **options,
            )
    except SystemExit as exc:  # onnx2tf exits on errors it reports
        raise RuntimeError(f"onnx2tf exited ({exc.code}): see {folder / 'tool.log'}") from None
    finally:
        os.chdir(old_cwd)
        os.environ["PATH"] = old_path
    return written


def _onnx2tf_int8(model: Path, data: np.ndarray, folder: Path, timer: Timer, job: str) -> Path:
    """``-oiqt -cind`` with float I/O (``tflite_int8.py::_int8_onnx2tf``). ``-cind`` data is in the
    saved_model input's layout (NCHW: the input is kept NCHW) scaled to [0, 1], with the mean and std
    onnx2tf applies itself so that ``(values - mean) / std`` is the model input again (§5.5)."""
    folder.mkdir(parents=True)
    lo, hi = float(data.min()), float(data.max())
    span = hi - lo if hi > lo else 1.0
    np.save(folder / "calibration.npy", ((data.astype(np.float64) - lo) / span).astype(np.float32))
    mean = np.full((1, 1, 1, 1), -lo / span, np.float32)
    std = np.full((1, 1, 1, 1), 1.0 / span, np.float32)
    written = _onnx2tf(
        model,
        folder,
        timer,
        job,
        "onnx2tf int8 (-oiqt)",
        output_integer_quantized_tflite=True,
        custom_input_op_name_np_data_path=[[_input(model)[0], str(folder / "calibration.npy"), mean, std]],
        input_quant_dtype="float32",
        output_quant_dtype="float32",
    )
    if not (written / "model_full_integer_quant.tflite").is_file():
        raise RuntimeError(f"onnx2tf wrote no full-integer file: see {folder / 'tool.log'}")
    return written / "model_full_integer_quant.tflite"


def _coreml(saved_model: Path, shape: list[int], target: str, folder: Path, timer: Timer, job: str) -> Path:
    """``ct.convert`` as ``targets/ios/coreml.py::convert_mlpackage``: FP16 ML Program, float32 I/O,
    input and outputs named from the saved_model's ``serving_default`` signature; then saved."""
    import coremltools as ct
    import tensorflow as tf

    out = folder / "fp16.mlpackage"
    with timer.call(job, "coremltools fp16", folder):
        signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
        keys = tf.nest.flatten({key: key for key in signature.structured_outputs})
        graph_names = [t.name.split(":")[0] for t in signature.outputs]
        outputs = {int(k.removeprefix("output_")): n for k, n in zip(keys, graph_names, strict=True)}
        tf_input = next(iter(signature.structured_input_signature[1]))
        mlmodel = ct.convert(
            str(saved_model),
            source="tensorflow",
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16,
            minimum_deployment_target=ct.target[target],
            inputs=[ct.TensorType(name=tf_input, shape=tuple(shape), dtype=np.float32)],
            outputs=[ct.TensorType(name=outputs[i], dtype=np.float32) for i in sorted(outputs)],
        )
        mlmodel.save(str(out))
    return out


class _Reader:
    """ORT CalibrationDataReader over preprocessed tensors, batch 1 (``calibration.py::ArrayReader``)."""

    def __init__(self, input_name: str, data: np.ndarray) -> None:
        self.input_name, self.data, self.index = input_name, data, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.data):
            return None
        self.index += 1
        return {self.input_name: self.data[self.index - 1][None]}

    def __len__(self) -> int:
        return len(self.data)


def _quantize(job: ModelJob, model: Path, data: np.ndarray, scratch: Path, timer: Timer) -> Path:
    """``quant_pre_process`` (folding on: the per-channel default), then ``quantize_static`` to QDQ on
    the tuning images with packager's settings (per channel, no reduce_range, QUInt8 activations,
    QInt8 weights, CPU calibration)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = scratch / "ort-quant-pre" / "preprocessed.onnx"
    with timer.call(job.name, "ort quant_pre_process", pre.parent):
        quant_pre_process(str(model), str(pre), skip_optimization=False, skip_symbolic_shape=False)
    tuning = data[np.arange(len(data)) % CHECK_EVERY != CHECK_EVERY - 1]
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[job.method]
    extra = {"CalibPercentile": job.percentile} if job.percentile is not None else {}
    input_name = onnx.load(str(pre), load_external_data=False).graph.input[0].name
    out = scratch / "ort-quantize" / "int8-qdq.onnx"
    with timer.call(job.name, f"ort quantize_static ({len(tuning)})", out.parent):
        quantize_static(
            str(pre),
            str(out),
            _Reader(input_name, tuning),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            calibration_providers=["CPUExecutionProvider"],
            extra_options=extra,
        )
    return out


def _ort_format(model: Path, variant: str, folder: Path, timer: Timer, job: str) -> Path:
    """``convert_onnx_models_to_ort`` on a copy in its own folder, Runtime style (the Android EPs list
    XNNPACK, the iOS ones CoreML), ``target_platform="arm"``."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    source = folder / "in" / f"{variant}.onnx"
    source.parent.mkdir(parents=True)
    shutil.copyfile(model, source)
    with timer.call(job, f"ort convert {variant}", folder):
        convert_onnx_models_to_ort(
            source.parent,
            output_dir=folder / "out",
            optimization_styles=[OptimizationStyle.Runtime],
            target_platform="arm",
        )
    (written,) = (folder / "out").glob("*.ort")
    return written


# --- the run --------------------------------------------------------------------------------------


def run_raw(config: Path, scratch: Path, out: TextIO | None = None) -> float:
    """Run the minimal set by hand for every model of ``config``, each call in its own folder under
    ``scratch`` (which must be empty or absent); print one line per call and the total to ``out``;
    return the total seconds (imports included, once). ``out`` defaults to ``sys.stdout``."""
    out = out or sys.stdout
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # what packager's CLI sets
    jobs, deployment_target = _jobs(config)
    scratch.mkdir(parents=True, exist_ok=True)
    timer = Timer(out)
    print(f"{'model':<16}{'tool':<26}{'seconds':>9}", file=out, flush=True)
    with timer.call("-", "python imports", scratch / "imports"):
        import coremltools  # noqa: F401
        import onnx  # noqa: F401
        import onnx2tf  # noqa: F401
        import onnxruntime.quantization
        import onnxruntime.tools.convert_onnx_models_to_ort  # noqa: F401
        import tensorflow  # noqa: F401
    for job in jobs:
        base = scratch / job.name
        data = _tensors(job)  # untimed: loading images is data preparation, not a tool call
        fp32 = _prepare(job, base / "prepare", timer)
        float_run = _onnx2tf(fp32, base / "onnx2tf-float", timer, job.name, "onnx2tf float")
        _onnx2tf_int8(fp32, data, base / "onnx2tf-int8", timer, job.name)
        _coreml(float_run, _input(fp32)[1], deployment_target, base / "coremltools", timer, job.name)
        int8 = _quantize(job, fp32, data, base, timer)
        _ort_format(fp32, "fp32", base / "ort-format-fp32", timer, job.name)
        _ort_format(int8, "int8-qdq", base / "ort-format-int8-qdq", timer, job.name)
    total = sum(row.seconds for row in timer.rows)
    print(f"{'total':<42}{total:>9.1f}", file=out, flush=True)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--scratch", type=Path, help="keep the files here (default: a temporary folder)")
    args = parser.parse_args()
    if args.scratch is not None:
        run_raw(args.config.resolve(), args.scratch.resolve())
        return
    with tempfile.TemporaryDirectory(prefix="raw-tools-") as tmp:
        run_raw(args.config.resolve(), Path(tmp))


if __name__ == "__main__":
    main()
