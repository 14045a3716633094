"""TFLite INT8 on XNNPACK: onnx2tf's own full-INT8 file beside packager's INT8 methods, measured in one run.

On one model of a config (default: the SFace example) this prepares the FP32 reference as a build does,
converts it to float TFLite once (``convert_float``) and to INT8 by every method asked for
(``convert_int8``; ``onnx2tf`` is the raw tool: ``-oiqt -cind``, min/max ranges). For each .tflite it
prints the size ratio to the FP32 .onnx, mean/min cosine of the primary output to the FP32 .onnx in
onnxruntime on the evaluation images (which calibration never sees), the XNNPACK partitions and
delegated/total ops, the p50 latency and its ratio to the FP32 .tflite (LiteRT, default XNNPACK
delegate, the same threads, timed round-robin so a busy host slows all alike) and the conversion time.
Run after ``python examples/faceid/prepare_data.py``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from packager import datasets
from packager.config import load_config
from packager.prepare import prepare_reference
from packager.validate.metrics import cosine_stats
from packager.validate.runners import TFLiteRunner
from targets.android import tflite, tflite_int8

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    name: str
    path: Path
    seconds: float
    note: str = ""
    cosine: tuple[float, float] = (0.0, 0.0)
    delegation: tflite.Delegation | None = None
    times: list[float] = field(default_factory=list)


def _reference_outputs(model: Path, data: np.ndarray, output: str) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.stack([session.run([output], {name: x[None]})[0][0] for x in data])


def _time_round_robin(rows: list[Row], threads: int, rounds: int, per_round: int) -> None:
    interpreters = []
    for row in rows:
        interpreter = tflite._loaded(row.path, threads)
        for d in interpreter.get_input_details():
            interpreter.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        for _ in range(10):
            interpreter.invoke()
        interpreters.append(interpreter)
    for _ in range(rounds):
        for row, interpreter in zip(rows, interpreters, strict=True):
            for _ in range(per_round):
                start = time.perf_counter()
                interpreter.invoke()
                row.times.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "faceid" / "packager.toml")
    parser.add_argument("--model", default="face_embedder", help="model name in the config (default: SFace)")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["onnx2tf", tflite_int8.DEFAULT_INT8_METHOD],
        choices=list(tflite_int8.INT8_METHODS),
        help="INT8 methods to compare (default: the raw tool and packager's default)",
    )
    parser.add_argument("--threads", type=int, default=1, help="LiteRT/XNNPACK threads (default 1)")
    parser.add_argument("--rounds", type=int, default=30, help="latency rounds (each artifact in turn)")
    parser.add_argument("--per-round", type=int, default=10, help="timed runs per artifact per round")
    parser.add_argument("--keep", type=Path, help="copy every .tflite into this folder")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    logging.getLogger("targets").setLevel(logging.INFO if args.verbose else logging.WARNING)
    config = load_config(args.config)
    spec = config.model(args.model)
    if spec.calibration is None:
        parser.error(f"model {spec.name!r} has no [models.calibration]: INT8 needs it")
    with tempfile.TemporaryDirectory(prefix="packager-tflite-") as tmp:
        work = Path(tmp)
        prepared = prepare_reference(spec, work / "fp32.onnx")
        shape = list(prepared.input.shape)
        calibration, _ = datasets.load_calibration(spec.calibration, spec.input, shape)  # type: ignore[arg-type]
        evalset = datasets.load_evaluation(spec.evaluation)
        evaluation = datasets.load_evaluation_tensors(evalset, spec.input, shape)  # type: ignore[arg-type]
        floats = tflite.convert_float(prepared.path, work / "float")
        rows = [
            Row("fp32 (onnx2tf)", floats.float32, floats.seconds, "saved_model + fp32 + fp16 files"),
            Row("fp16 (onnx2tf)", floats.float16, floats.seconds, "same run"),
        ]
        for method in args.methods:
            result = tflite_int8.convert_int8(
                prepared.path, calibration, work / method, method, threads=args.threads
            )
            note = f"range cut {result.percentile}" if result.percentile else "min/max ranges"
            if result.equalized_pairs:
                note += f"; {result.equalized_pairs} pairs equalized"
            if result.prelu_rewritten:
                note += f"; {result.prelu_rewritten} PRelu rewritten"
            rows.append(Row(f"int8 {method}", result.path, result.seconds, note))
        output = spec.primary_output or prepared.output.name
        expected = _reference_outputs(prepared.path, evaluation, output)
        shapes = {output: [1, *expected.shape[1:]]}
        for row in rows:
            runner = TFLiteRunner(
                row.path, threads=args.threads, reference_names=[output], reference_shapes=shapes
            )
            stats = cosine_stats(expected, runner.run_all(evaluation)[output])
            row.cosine = (stats.mean, stats.min)
            row.delegation = tflite.xnnpack_delegation(row.path, args.threads)
        _time_round_robin(rows, args.threads, args.rounds, args.per_round)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for row in rows:
                (args.keep / row.path.name.replace(".tflite", f"-{row.name.split()[-1]}.tflite")).write_bytes(
                    row.path.read_bytes()
                )
        _print(f"{spec.name} [{output}]", prepared.path, rows, len(calibration), len(evaluation), args)


def _print(
    title: str, onnx: Path, rows: list[Row], n_cal: int, n_eval: int, args: argparse.Namespace
) -> None:
    fp32 = float(np.median(rows[0].times))
    print(
        f"\n{title}: {n_cal} calibration images; mean/min cosine to the FP32 .onnx on {n_eval} evaluation "
        f"images; p50 over {args.rounds * args.per_round} runs, LiteRT + XNNPACK, {args.threads} thread(s), "
        f"TFLite FP32 {fp32 * 1000:.2f} ms"
    )
    print(
        f"{'artifact':<20}{'size':>7}{'mean cos':>10}{'min cos':>9}{'partitions':>11}{'ops in XNNPACK':>16}"
        f"{'p50 ms':>8}{'p50/FP32':>9}{'convert s':>10}  notes"
    )
    size = onnx.stat().st_size
    for row in rows:
        d = row.delegation
        assert d is not None
        p50 = float(np.median(row.times))
        print(
            f"{row.name:<20}{row.path.stat().st_size / size:>7.3f}{row.cosine[0]:>10.5f}{row.cosine[1]:>9.4f}"
            f"{d.partitions:>11}{f'{d.delegated_ops}/{d.total_ops}':>16}{p50 * 1000:>8.2f}{p50 / fp32:>9.3f}"
            f"{row.seconds:>10.0f}  {row.note}" + (f"; outside XNNPACK: {d.outside}" if d.outside else "")
        )


if __name__ == "__main__":
    main()
