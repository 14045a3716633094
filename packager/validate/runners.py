"""Host runners: the same artifact, run the same way every time, in a named numerics mode."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from packager.errors import StepError
from packager.results import OrtMode

ProgressFn = Callable[[int, int], None]


class OrtRunner:
    """One onnxruntime CPU session.

    ``reference`` mode disables graph optimizations, so QuantizeLinear/DequantizeLinear pairs run as
    separate float ops instead of being fused into x86 integer kernels; that is the numerics mobile
    INT8 kernels (ARM, XNNPACK) follow, so mobile gates are judged in this mode (DESIGN §4).
    """

    def __init__(
        self, model: Path, mode: OrtMode = "default", threads: int = 1, output: str | None = None
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            if mode == "reference"
            else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        )
        try:
            self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises several pybind exception types
            raise StepError(
                f"load {model.name}",
                f"onnxruntime cannot load {model} ({exc})",
                "run `packager check` on the model",
            ) from None
        self.mode = mode
        self.threads = threads
        self.input_name = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        if output is not None and output not in outputs:
            # Falling back to another output would score the wrong tensor and still look fine.
            raise StepError(
                f"load {model.name}",
                f"{model} has no output {output!r} (outputs: {', '.join(outputs)})",
                "fix [models].output.name",
            )
        self.output_name = output or outputs[0]

    def run(self, batch: np.ndarray, progress: ProgressFn | None = None) -> np.ndarray:
        """Run sample by sample: mobile artifacts have batch fixed to 1."""
        results = []
        for i, sample in enumerate(batch):
            (out,) = self.session.run([self.output_name], {self.input_name: sample[None]})
            results.append(out[0])
            if progress:
                progress(i + 1, len(batch))
        return np.stack(results).astype(np.float32)

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
