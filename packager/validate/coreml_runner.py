"""A Core ML ``.mlpackage`` on this host, behind the :class:`packager.validate.formats.Runner` protocol.

Core ML prediction goes through Apple's Core ML framework, which exists only on macOS: coremltools on
Linux loads the spec (``skip_model_load=True``) but cannot ``predict``. :class:`CoreMLRunner` therefore
refuses to load anywhere else with :class:`~packager.validate.formats.NotRunnable`, and coremltools is
imported inside it, so importing this module stays cheap.

:func:`feature_names` is the one definition of how an ONNX tensor name becomes a Core ML feature name;
the converter (``targets/ios/coreml.py``) names the package's features with it and the runner maps
them back with it, so outputs are matched by name, never by position (DESIGN §5.25).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from packager.errors import ConversionError, StepError, first_line
from packager.results import OrtMode
from packager.validate.runners import ConvertedRunner

MACOS_ONLY = "Core ML prediction needs macOS"
"""The reason recorded when this host cannot run an ``.mlpackage`` (coremltools has no Linux runtime)."""


def feature_names(onnx_names: Sequence[str]) -> dict[str, str]:
    """``{ONNX name: Core ML feature name}`` for one list of features (the outputs, or the one input).

    An ML Program's feature names must match ``[a-zA-Z_][a-zA-Z0-9_]*`` (``coremltools.utils.rename_feature``
    refuses others). coremltools' own ``NameSanitizer`` makes them so: other characters become ``_``, a
    leading digit gets a ``_`` prefix, MIL's reserved words get ``_workaround`` (``int8`` ->
    ``int8_workaround``), and a name sanitized into one already taken gets ``_0`` appended (then ``_1``,
    cumulatively: ``a.b``, ``a:b`` next to ``a_b`` -> ``a_b_0``, ``a_b_0_1``). Valid names never change
    (``fc1`` -> ``fc1``). The result depends on the whole list: call it with all the outputs, in ONNX order.
    """
    from coremltools.converters.mil.mil.passes.defs.preprocess import NameSanitizer

    sanitizer = NameSanitizer()
    # The sanitizer keeps a valid name as it is even when an earlier name was sanitized into it
    # (``a.b`` -> ``a_b``, then ``a_b`` -> ``a_b``): register the valid names first.
    valid = [name for name in onnx_names if NameSanitizer().sanitize_name(name) == name]
    sanitizer.all_names.update(valid)
    return {name: name if name in valid else sanitizer.sanitize_name(name) for name in onnx_names}


class CoreMLRunner(ConvertedRunner):
    """One ``MLModel`` with ``compute_units=ALL`` (CPU, GPU and Neural Engine, as an app gets by default).

    Fed and read on the ONNX model's terms, like :class:`~packager.validate.runners.TFLiteRunner`: one
    float32 sample [1, *onnx_input_shape[1:]] at a time (the package has a fixed batch of 1), transposed
    to channels-last only when the package's input is the channels-last form of it; outputs come back by
    ONNX name through :func:`feature_names` of ``reference_names`` and are transposed back to the ONNX
    layout when ``reference_shapes`` say so (onnx2tf keeps 3-D and wider outputs channels-last).

    ``threads`` is accepted for the common factory signature and ignored: Core ML schedules its own work.
    Raises :class:`~packager.validate.formats.NotRunnable` off macOS, :class:`ConversionError` when Core
    ML cannot load or compile the package, :class:`StepError` when its features do not fit the ONNX model.
    """

    fix = "report the model to the converter; drop coreml from [ios].runtimes until it converts"

    def __init__(
        self,
        model: Path,
        mode: OrtMode = "default",
        threads: int = 1,
        label: str | None = None,
        reference_names: Sequence[str] | None = None,
        reference_shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        self.label = label or model.name
        self.model = model
        self.mode = mode
        self.threads = threads
        if sys.platform != "darwin":
            # Imported here: formats.py imports the runners, so a module-level import would be circular.
            from packager.validate.formats import NotRunnable

            raise NotRunnable(self.label, MACOS_ONLY)
        import coremltools as ct

        try:
            self.mlmodel = ct.models.MLModel(str(model), compute_units=ct.ComputeUnit.ALL)
        except Exception as exc:  # Core ML's compiler raises several types with its own text
            raise ConversionError(
                f"load {self.label}",
                "Core ML",
                f"cannot load {self.label}: {first_line(exc).replace(str(model), self.label)}",
                "the converter wrote a package this macOS cannot compile: check the deployment target "
                "against this Mac's OS, or drop coreml from [ios].runtimes",
            ) from None
        description = self.mlmodel.get_spec().description
        if len(description.input) != 1:
            raise StepError(
                f"load {self.label}",
                f"{self.label} has {len(description.input)} inputs; packager feeds one",
                "export the model with a single image input",
            )
        self.input_name = description.input[0].name
        self.input_shape = tuple(int(d) for d in description.input[0].type.multiArrayType.shape)
        outputs = [o.name for o in description.output]
        names = list(reference_names) if reference_names is not None else outputs
        self.onnx_names = {feature: name for name, feature in feature_names(names).items()}
        if set(self.onnx_names) != set(outputs):
            raise StepError(
                f"load {self.label}",
                f"the outputs of {self.label} ({', '.join(outputs)}) are not the ONNX model's outputs "
                f"({', '.join(names)}) under their Core ML names ({', '.join(self.onnx_names)})",
                "rebuild the package with packager, which names its outputs after the ONNX outputs",
            )
        self.reference_shapes = dict(reference_shapes or {})

    def _invoke(self, feed: np.ndarray, index: int) -> dict[str, np.ndarray]:
        try:
            values = self.mlmodel.predict({self.input_name: feed})
        except Exception as exc:  # Core ML raises RuntimeError/ValueError with its own text
            raise StepError(
                f"run {self.label}",
                f"Core ML failed on input {index} (shape {list(feed.shape)}): {first_line(exc)}",
                "check that [models].input (size, layout, channels) matches the model",
            ) from None
        return {feature: values[feature] for feature in self.onnx_names}
