"""Preparation's clean-ups: what exporters leave that breaks runtimes, quantizers and converters."""

from __future__ import annotations

from pathlib import Path

import model_factory
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from quantize_helpers import context, held_out_data, mean_cosine

from packager import cleanup
from packager.config import parse_config
from packager.errors import ConfigError
from packager.prepare import prepare_reference
from packager.quantize import registry


def _spec(tmp_path: Path, model: onnx.ModelProto, **model_fields: object):
    source = model_factory.save(model, tmp_path / "src.onnx")
    fields = {"name": "m", "source": str(source), "input": {"size": [32, 32]}, "variants": ["fp16"]}
    fields["evaluation"] = {"images": "eval"}
    data = {"project": {"name": "a", "version": "1"}, "models": [{**fields, **model_fields}]}
    return parse_config(data, tmp_path / "p.toml").models[0]


def embedding_read_by_relu() -> onnx.ModelProto:
    """mobilenet_like whose ``embedding`` output is also read by a Relu making a second output."""
    model = model_factory.mobilenet_like()
    model.graph.node.append(helper.make_node("Relu", ["embedding"], ["positive"], name="relu_out"))
    model.graph.output.append(helper.make_tensor_value_info("positive", TensorProto.FLOAT, [1, 64]))
    return model


def test_a_newer_ir_version_than_onnxruntime_loads_is_lowered(tmp_path: Path) -> None:
    model = model_factory.mobilenet_like()
    model.ir_version = 12  # what onnx 1.19's helper.make_model writes
    prepared = prepare_reference(_spec(tmp_path, model), tmp_path / "fp32.onnx")
    assert onnx.load(str(prepared.path)).ir_version == cleanup.ORT_MAX_IR_VERSION
    assert f"IR version 12 -> {cleanup.ORT_MAX_IR_VERSION} (the newest onnxruntime loads)" in prepared.changes


def test_an_output_other_nodes_read_gets_its_own_identity(tmp_path: Path) -> None:
    prepared = prepare_reference(_spec(tmp_path, embedding_read_by_relu()), tmp_path / "fp32.onnx")
    graph = onnx.load(str(prepared.path)).graph
    (identity,) = [n for n in graph.node if n.output[0] == "embedding"]
    assert identity.op_type == "Identity" and identity.input[0] == "embedding__internal"
    assert [n.input[0] for n in graph.node if n.name == "relu_out"] == ["embedding__internal"]
    assert [o.name for o in graph.output] == ["embedding", "positive"]


def test_int8_qdq_does_not_clip_an_output_a_relu_also_reads(tmp_path: Path) -> None:
    # Before: the quantizer folded the Relu into the output's range, so `embedding` came back
    # clipped at 0 (mean cosine 0.66 to FP32).
    ctx = context(tmp_path, "int8-qdq", build=embedding_read_by_relu, output={"name": "embedding"})
    registry.get("int8-qdq").run(ctx)
    assert mean_cosine(ctx.reference, ctx.output, held_out_data(), output="embedding") > 0.99


def test_fp16_weights_behind_casts_become_fp32_in_the_reference(tmp_path: Path) -> None:
    model = model_factory.mobilenet_like()
    graph = model.graph
    fc_w = next(t for t in graph.initializer if t.name.startswith("fc_w") or t.dims == [64, 24])
    half = numpy_helper.from_array(numpy_helper.to_array(fc_w).astype(np.float16), fc_w.name + "_fp16")
    graph.initializer.remove(fc_w)
    graph.initializer.append(half)
    graph.node.insert(
        0, helper.make_node("Cast", [half.name], [fc_w.name], to=TensorProto.FLOAT, name="cast_w")
    )
    prepared = prepare_reference(_spec(tmp_path, model), tmp_path / "fp32.onnx")
    weights = onnx.load(str(prepared.path)).graph.initializer
    assert all(t.data_type != TensorProto.FLOAT16 for t in weights)
    assert "stored 1 FP16 weights (read through Casts to float) as FP32, exactly" in prepared.changes
    assert not [n for n in onnx.load(str(prepared.path)).graph.node if n.op_type == "Cast"]


def test_an_output_name_the_model_lacks_is_a_config_error(tmp_path: Path) -> None:
    spec = _spec(tmp_path, model_factory.mobilenet_like(), output={"name": "embb"})
    with pytest.raises(ConfigError, match=r"output\.name = 'embb'.*outputs are embedding") as err:
        prepare_reference(spec, tmp_path / "fp32.onnx")
    assert err.value.exit_code == 2


def test_weights_held_in_constant_nodes_become_initializers_and_int8_dynamic_builds(tmp_path: Path) -> None:
    def constant_weights() -> onnx.ModelProto:
        model = model_factory.mobilenet_like()
        graph = model.graph
        fc = next(t for t in graph.initializer if list(t.dims) == [64, 24])
        graph.initializer.remove(fc)
        graph.node.insert(0, helper.make_node("Constant", [], [fc.name], value=fc, name="fc_weight"))
        return model

    ctx = context(tmp_path, "int8-dynamic", build=constant_weights)
    assert not [n for n in onnx.load(str(ctx.reference)).graph.node if n.op_type == "Constant"]
    registry.get("int8-dynamic").run(ctx)  # before: "Expected ... to be an initializer"
    assert mean_cosine(ctx.reference, ctx.output, held_out_data()) > 0.98
