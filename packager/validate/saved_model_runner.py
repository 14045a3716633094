"""A TensorFlow SavedModel on the host: the stand-in for a Core ML package where Core ML cannot run.

coremltools converts an ``.mlpackage`` from the SavedModel onnx2tf writes (DESIGN §5 pitfall 10), and
Core ML predicts only on macOS. On other hosts the SavedModel is measured in its place with the same
data, metrics and gates, so a conversion onnx2tf got wrong (pitfall 24) still fails the artifact; what
coremltools and Core ML add on top (FP16 compute) is not measured, and the report says so.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from packager.errors import ConversionError, StepError, first_line
from packager.results import OrtMode
from packager.validate.runners import ConvertedRunner, match_outputs

SIGNATURE = "serving_default"
_INDEXED = re.compile(r"^output_(\d+)$")
"""onnx2tf 1.29.24 names a SavedModel's signature outputs ``output_<i>``, i = the ONNX output index
(its .tflite signatures carry the ONNX names: ``runners.ONNX2TF_OUTPUT_SPELLINGS``)."""


def onnx_output_names(artifact: Sequence[str], onnx: Sequence[str], label: str) -> dict[str, str]:
    """``{signature output: ONNX output}``: ``output_<i>`` by the ONNX index onnx2tf put in the name
    (a name, not a position in a dict), else by the ONNX names' spellings. Raises :class:`StepError`
    when they do not pair up one to one."""
    indexed = {name: int(m.group(1)) for name in artifact if (m := _INDEXED.match(name))}
    if len(indexed) == len(artifact) == len(onnx) and sorted(indexed.values()) == list(range(len(onnx))):
        return {name: onnx[i] for name, i in indexed.items()}
    return match_outputs(artifact, onnx, label)


class SavedModelRunner(ConvertedRunner):
    """The ``serving_default`` signature of a SavedModel folder, one sample at a time (its batch dim is
    the ONNX model's, fixed to 1 for mobile). Fed and read on the ONNX model's terms like the other
    runners: a channels-last input gets the sample transposed, channels-last outputs are put back.

    Raises :class:`ConversionError` when TensorFlow cannot load the folder and :class:`StepError` when
    its signature does not fit the ONNX model (inputs, outputs).
    """

    fix = "report the model to onnx2tf; drop the artifacts made from it until it converts right"

    def __init__(
        self,
        model: Path,
        mode: OrtMode = "default",
        threads: int = 1,
        label: str | None = None,
        reference_names: Sequence[str] | None = None,
        reference_shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        import tensorflow as tf

        self.label = label or model.name
        self.mode = mode
        with contextlib.suppress(RuntimeError):  # TensorFlow fixes its pools at first use in a process
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        try:
            self._loaded = tf.saved_model.load(str(model))  # the signature needs its owner alive
            self._signature = self._loaded.signatures[SIGNATURE]
        except Exception as exc:  # TensorFlow raises OSError, KeyError and its own errors here
            raise ConversionError(
                f"load {self.label}",
                "TensorFlow",
                f"cannot load {self.label}: {first_line(exc)}",
                "rebuild the SavedModel (delete its cache entry); the build log has TensorFlow's message",
            ) from None
        inputs = self._signature.structured_input_signature[1]
        if len(inputs) != 1:
            raise StepError(
                f"load {self.label}",
                f"{self.label} has {len(inputs)} inputs ({', '.join(inputs)}); packager feeds one",
                "export the model with a single image input",
            )
        self.input_name, spec = next(iter(inputs.items()))
        self.input_shape = tuple(int(d) if d is not None else -1 for d in spec.shape)
        outputs = list(self._signature.structured_outputs)
        names = list(reference_names) if reference_names is not None else outputs
        self.onnx_names = onnx_output_names(outputs, names, self.label)
        self.reference_shapes = dict(reference_shapes or {})

    def _invoke(self, feed: np.ndarray, index: int) -> dict[str, np.ndarray]:
        try:
            results = self._signature(**{self.input_name: feed})
        except Exception as exc:  # TensorFlow raises its own error types with their own text
            raise StepError(
                f"run {self.label}",
                f"TensorFlow failed on input {index} (shape {list(feed.shape)}): {first_line(exc)}",
                "check that [models].input (size, layout, channels) matches the model",
            ) from None
        return {name: value.numpy() for name, value in results.items()}
