"""Turn the source model into the FP32 reference: cleaned, batch fixed to 1, opset >= 13, verified.

Every variant and every platform artifact starts from this file, so it is checked numerically
against the untouched source before anything else runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from packager import graph
from packager.config import ModelSpec
from packager.errors import ModelError
from packager.results import IOInfo

log = logging.getLogger(__name__)

EQUIVALENCE_MIN_COSINE = 0.99999
"""The prepared graph must compute the same function; anything below this is a converter bug."""


@dataclass(frozen=True)
class PreparedModel:
    path: Path
    input: IOInfo
    output: IOInfo
    opset_source: int
    opset: int
    changes: list[str]
    equivalence_cosine: float


def prepare_reference(spec: ModelSpec, output: Path) -> PreparedModel:
    source = spec.source
    original = graph.load_model(source)
    model = onnx.ModelProto()
    model.CopyFrom(original)
    changes: list[str] = []

    removed = graph.drop_initializer_inputs(model)
    if removed:
        changes.append(f"removed {removed} initializers listed as graph inputs")
    value = graph.image_input(model, spec.input, source)
    if len(graph.graph_inputs(model)) > 1:
        others = [i.name for i in graph.graph_inputs(model) if i.name != value.name]
        raise ModelError(
            source, f"extra inputs {others} besides the image input", "export with one image input"
        )
    shape = [int(d) if isinstance(d, int) and d > 0 else 1 for d in graph.io_info(value).shape]
    shape[0] = 1
    changes += [f"fixed {c}" for c in graph.fix_input_shape(model, value.name, shape)]

    opset_source = graph.opset_of(model)
    if opset_source < graph.MIN_QDQ_OPSET:
        model = graph.upgrade_opset(model, graph.MIN_QDQ_OPSET, source)
        changes.append(f"upgraded opset {opset_source} -> {graph.MIN_QDQ_OPSET} (per-channel QDQ needs 13)")
    model = graph.infer_shapes(model, source)
    output_value = _pick_output(model, spec.output.name, source)
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(output))

    cosine = _equivalence(source, output, value.name, shape)
    if cosine < EQUIVALENCE_MIN_COSINE:
        raise ModelError(
            source,
            f"the prepared model differs from the source (cosine {cosine:.6f}) after: {'; '.join(changes)}",
            "re-export the model at opset >= 13 with a fixed batch of 1 and report this as a bug",
        )
    return PreparedModel(
        path=output,
        input=graph.io_info(next(i for i in model.graph.input if i.name == value.name)),
        output=graph.io_info(output_value),
        opset_source=opset_source,
        opset=graph.opset_of(model),
        changes=changes,
        equivalence_cosine=cosine,
    )


def _pick_output(model: onnx.ModelProto, name: str | None, source: Path) -> onnx.ValueInfoProto:
    outputs = list(model.graph.output)
    if name is None:
        return outputs[0]
    for out in outputs:
        if out.name == name:
            return out
    raise ModelError(
        source, f"no output named {name!r} (outputs: {[o.name for o in outputs]})", "fix output.name"
    )


def _equivalence(source: Path, prepared: Path, input_name: str, shape: list[int]) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    rng = np.random.default_rng(0)
    sample = rng.uniform(0, 255, shape).astype(np.float32)
    results = []
    for path in (source, prepared):
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {input_name: sample}
        # Old exporters list weights as inputs; ORT uses the initializer when such an input is not fed.
        results.append(session.run(None, feeds)[0].astype(np.float64).ravel())
    a, b = results
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 if denom == 0 and np.array_equal(a, b) else float(np.dot(a, b) / max(denom, 1e-30))
