"""packager's quantization recipes beside the raw tools' default calls, measured in one run.

On one model of a config (default: the SFace example) this prepares the FP32 reference as a build
does (cleaned, batch 1, opset 13), runs every registered recipe through its registry entry, and
runs the raw calls on the same prepared file:

* ``raw quantize_dynamic``: ``onnxruntime.quantization.quantize_dynamic(weight_type=QUInt8)``;
* ``raw quantize_static``: ``quantize_static`` with its defaults (QDQ, QInt8/QInt8, MinMax,
  per-tensor), fed the same calibration tensors the recipes get;
* ``raw float16``: ``onnxconverter_common.float16.convert_float_to_float16`` with its defaults
  (float16 inputs and outputs; fed float16, compared as float32).

For each it prints the size ratio to FP32, mean/min cosine of the primary output to FP32 on the
evaluation images (which calibration never sees), in the default-kernel mode and in the reference
mode (graph optimizations off: QDQ in float, the mobile-kernel numerics), and the default-kernel
p50 latency ratio to FP32. Latency is timed round-robin (every artifact in turn, repeatedly), so a
busy host slows all of them alike. Run after ``python examples/faceid/prepare_data.py``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from packager import datasets
from packager.config import ModelSpec, load_config
from packager.prepare import prepare_reference
from packager.quantize import registry
from packager.quantize.calibrated import run_calibration
from packager.quantize.registry import QuantizeContext
from packager.validate.metrics import cosine_stats

ROOT = Path(__file__).resolve().parents[1]
MODES = ("default", "reference")


@dataclass(frozen=True)
class Data:
    calibration: np.ndarray
    evaluation: np.ndarray


@dataclass
class Row:
    name: str
    path: Path
    note: str = ""
    cosine: dict[str, tuple[float, float]] | None = None
    p50_ms: float = 0.0


def _session(path: Path, mode: str):  # -> ort.InferenceSession
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if mode == "reference"
        else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    )
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _feed(session, sample: np.ndarray) -> dict[str, np.ndarray]:
    """One sample in the input's own dtype (the raw FP16 conversion takes float16)."""
    first = session.get_inputs()[0]
    dtype = np.float16 if first.type == "tensor(float16)" else np.float32
    return {first.name: sample[None].astype(dtype)}


def _outputs(path: Path, mode: str, data: np.ndarray, output: str | None) -> np.ndarray:
    session = _session(path, mode)
    name = output or session.get_outputs()[0].name
    return np.stack([session.run([name], _feed(session, x))[0][0] for x in data]).astype(np.float32)


def _time_round_robin(rows: list[Row], sample: np.ndarray, rounds: int, per_round: int) -> None:
    sessions = [_session(r.path, "default") for r in rows]
    feeds = [_feed(s, sample) for s in sessions]
    for session, feed in zip(sessions, feeds, strict=True):
        for _ in range(10):
            session.run(None, feed)
    times: list[list[float]] = [[] for _ in rows]
    for _ in range(rounds):
        for i, (session, feed) in enumerate(zip(sessions, feeds, strict=True)):
            for _ in range(per_round):
                start = time.perf_counter()
                session.run(None, feed)
                times[i].append(time.perf_counter() - start)
    for row, t in zip(rows, times, strict=True):
        row.p50_ms = float(np.median(t)) * 1000.0


def _packager_rows(spec: ModelSpec, reference: Path, data: Data, work: Path) -> list[Row]:
    assert spec.calibration is not None
    calibrated = work / "calibrated"
    calibrated.mkdir()
    start = time.perf_counter()
    run_calibration(
        reference,
        data.calibration,
        spec.calibration,
        spec.calibration.probe_images,
        calibrated,
        output=spec.primary_output,
    )
    logging.getLogger("packager").info("calibration: %.1f s", time.perf_counter() - start)
    np.save(work / "calibration.npy", data.calibration)
    rows = []
    for name in registry.names():
        recipe = registry.get(name)
        scratch = work / f"work-{name}"
        scratch.mkdir()
        ctx = QuantizeContext(
            spec=spec,
            reference=reference,
            output=work / f"{name}.onnx",
            work_dir=scratch,
            calibrated=calibrated if recipe.needs_calibration else None,
            calibration_data=work / "calibration.npy" if recipe.reads_calibration_data else None,
        )
        start = time.perf_counter()
        details = recipe.run(ctx)
        note = f"{time.perf_counter() - start:.0f} s"
        if name == "mixed":
            floats = details.get("float_nodes", [])
            note += f"; {len(floats)} float nodes"  # type: ignore[arg-type]
            for part in ("tuning", "check"):
                value = details.get(f"reached_mean_cosine_on_{part}")
                if value is not None:
                    note += f"; {part} {value:.5f}"
        rows.append(Row(name, ctx.output, note))
    return rows


def _raw_rows(reference: Path, data: Data, work: Path) -> list[Row]:
    import onnx
    from onnxconverter_common import float16
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_dynamic, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self, name: str, tensors: np.ndarray) -> None:
            self.items = iter([{name: x[None]} for x in tensors])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    input_name = onnx.load(str(reference), load_external_data=False).graph.input[0].name
    calls: dict[str, Callable[[Path], None]] = {
        "raw quantize_dynamic": lambda out: quantize_dynamic(
            str(reference), str(out), weight_type=QuantType.QUInt8
        ),
        "raw quantize_static": lambda out: quantize_static(
            str(reference), str(out), Reader(input_name, data.calibration)
        ),
        "raw float16": lambda out: onnx.save(
            float16.convert_float_to_float16(onnx.load(str(reference))), str(out)
        ),
    }
    rows = []
    for name, call in calls.items():
        out = work / (name.replace(" ", "-") + ".onnx")
        start = time.perf_counter()
        call(out)
        rows.append(Row(name, out, f"{time.perf_counter() - start:.0f} s"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "faceid" / "packager.toml")
    parser.add_argument("--model", default="face_embedder", help="model name in the config (default: SFace)")
    parser.add_argument("--rounds", type=int, default=20, help="latency rounds (each artifact in turn)")
    parser.add_argument("--per-round", type=int, default=5, help="timed runs per artifact per round")
    parser.add_argument("--keep", type=Path, help="copy every artifact into this folder")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    # onnxruntime's quantizer and onnxconverter-common talk through the root logger and warnings.
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    logging.getLogger("packager").setLevel(logging.INFO if args.verbose else logging.WARNING)
    warnings.filterwarnings("ignore", module="onnxconverter_common")
    config = load_config(args.config)
    spec = config.model(args.model)
    if spec.calibration is None:
        parser.error(f"model {spec.name!r} has no [models.calibration]: the static recipes need it")
    with tempfile.TemporaryDirectory(prefix="packager-recipes-") as tmp:
        work = Path(tmp)
        prepared = prepare_reference(spec, work / "fp32.onnx")
        shape = list(prepared.input.shape)
        calibration, _ = datasets.load_calibration(spec.calibration, spec.input, shape)  # type: ignore[arg-type]
        evalset = datasets.load_evaluation(spec.evaluation)
        data = Data(calibration, datasets.load_evaluation_tensors(evalset, spec.input, shape))  # type: ignore[arg-type]
        rows = [
            Row("fp32", prepared.path, "prepared reference"),
            *_packager_rows(spec, prepared.path, data, work),
            *_raw_rows(prepared.path, data, work),
        ]
        output = spec.primary_output
        expected = _outputs(prepared.path, "default", data.evaluation, output)
        for row in rows:
            row.cosine = {}
            for mode in MODES:
                stats = cosine_stats(expected, _outputs(row.path, mode, data.evaluation, output))
                row.cosine[mode] = (stats.mean, stats.min)
        _time_round_robin(rows, data.evaluation[0], args.rounds, args.per_round)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for row in rows:
                (args.keep / row.path.name).write_bytes(row.path.read_bytes())
        _print(f"{spec.name} [{prepared.output.name}]", prepared.path, rows, data, args)


def _print(title: str, reference: Path, rows: list[Row], data: Data, args: argparse.Namespace) -> None:
    fp32 = rows[0]
    size = reference.stat().st_size
    print(
        f"\n{title}: {len(data.calibration)} calibration images; mean/min cosine to FP32 on "
        f"{len(data.evaluation)} evaluation images (calibration never sees them) with default kernels "
        f"and in the reference mode (optimizations off); p50 over {args.rounds * args.per_round} runs, "
        f"1 thread, default kernels, FP32 {fp32.p50_ms:.2f} ms"
    )
    print(
        f"{'artifact':<22}{'size':>7}{'default mean':>14}{'min':>8}{'reference mean':>16}{'min':>8}"
        f"{'p50/FP32':>10}  notes"
    )
    for row in rows:
        assert row.cosine is not None
        (dm, dmin), (rm, rmin) = row.cosine["default"], row.cosine["reference"]
        print(
            f"{row.name:<22}{row.path.stat().st_size / size:>7.4f}{dm:>14.5f}{dmin:>8.4f}{rm:>16.5f}"
            f"{rmin:>8.4f}{row.p50_ms / fp32.p50_ms:>10.2f}  {row.note}"
        )


if __name__ == "__main__":
    main()
