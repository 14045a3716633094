"""The fp16 recipe on real small graphs: folding first, Casts and FP16 weights, converter failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from quantize_helpers import calibration_data, context, fp16_context, mean_cosine, run_fp16

from packager.errors import ConversionError
from packager.quantize.registry import QuantizeContext


def test_fp16_halves_weights_keeps_float32_io_and_matches(tmp_path: Path) -> None:
    ctx = context(tmp_path, "fp16")
    details = run_fp16(ctx)
    model = onnx.load(str(ctx.output))
    weights = [t for t in model.graph.initializer if len(t.dims) == 4]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 and t.raw_data for t in weights)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert ctx.output.stat().st_size < 0.56 * ctx.reference.stat().st_size
    assert details["keep_io_types"] is True
    assert mean_cosine(ctx.reference, ctx.output, calibration_data()[:4]) > 0.9999


# --- small real models, built here -------------------------------------------------------------

RNG_SEED = 3
SHAPE = [1, 3, 8, 8]


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], channels: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _weights(rng: np.random.Generator, cout: int, dtype: type = np.float32) -> list[np.ndarray]:
    return [rng.normal(0, 0.3, (cout, 3, 3, 3)).astype(dtype), rng.normal(0, 0.1, cout).astype(dtype)]


def conv_batchnorm_huge_variance() -> onnx.ModelProto:
    """Conv -> BatchNorm whose variance is ~1e8 on two channels (PP-OCRv4 det has such a constant)."""
    rng = np.random.default_rng(RNG_SEED)
    w, b = _weights(rng, 4)
    var = np.array([1e8, 9.8e7, 1.0, 0.5], np.float32)
    scale = np.array([2e4, 1e4, 1.0, 1.0], np.float32)  # those channels matter: out = x * scale / sqrt(var)
    inits = [
        numpy_helper.from_array(a, n)
        for a, n in [(w, "W"), (b, "B"), (scale, "s"), (np.zeros(4, np.float32), "m"), (var, "v")]
    ] + [numpy_helper.from_array(np.zeros(4, np.float32), "bb")]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["y"], name="bn"),
    ]
    return _model(nodes, inits, 4)


def conv_relu_mask_cast() -> onnx.ModelProto:
    """``y = c * float(c > 0)``: a data-dependent Cast(to=FLOAT), as exporters write ``(x > 0).float()``."""
    rng = np.random.default_rng(RNG_SEED)
    w, b = _weights(rng, 4)
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "B"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Greater", ["c", "zero"], ["positive"], name="greater"),
        helper.make_node("Cast", ["positive"], ["mask"], name="mask_to_float", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["c", "mask"], ["y"], name="mul"),
    ]
    return _model(nodes, inits, 4)


def half_weights_with_casts() -> onnx.ModelProto:
    """``model.half()`` weights stored as FP16, each Cast to float before a float Conv."""
    rng = np.random.default_rng(RNG_SEED)
    w, b = _weights(rng, 4, np.float16)
    inits = [numpy_helper.from_array(w, "W16"), numpy_helper.from_array(b, "B16")]
    nodes = [
        helper.make_node("Cast", ["W16"], ["W"], name="w_to_float", to=TensorProto.FLOAT),
        helper.make_node("Cast", ["B16"], ["B"], name="b_to_float", to=TensorProto.FLOAT),
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    return _model(nodes, inits, 4)


def autocast_region() -> onnx.ModelProto:
    """An FP16 region inside a float graph (autocast export): Cast to FP16, FP16 Conv, Cast back."""
    rng = np.random.default_rng(RNG_SEED)
    w, b = _weights(rng, 4, np.float16)
    inits = [numpy_helper.from_array(w, "W16"), numpy_helper.from_array(b, "B16")]
    nodes = [
        helper.make_node("Cast", ["x"], ["x16"], name="to_half", to=TensorProto.FLOAT16),
        helper.make_node("Conv", ["x16", "W16", "B16"], ["c16"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Cast", ["c16"], ["c"], name="to_float", to=TensorProto.FLOAT),
        helper.make_node("Softmax", ["c"], ["y"], name="softmax", axis=1),
    ]
    return _model(nodes, inits, 4)


def quantize_dequantize() -> onnx.ModelProto:
    """Conv -> QuantizeLinear -> DequantizeLinear at opset 13, whose schemas take float only, not FP16."""
    rng = np.random.default_rng(RNG_SEED)
    w, b = _weights(rng, 4)
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "B"),
        numpy_helper.from_array(np.array(0.02, np.float32), "scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "zero_point"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "scale", "zero_point"], ["q"], name="quant"),
        helper.make_node("DequantizeLinear", ["q", "scale", "zero_point"], ["y"], name="dequant"),
    ]
    return _model(nodes, inits, 4)


def _inputs(count: int = 4) -> np.ndarray:
    return np.random.default_rng(11).uniform(0, 1, (count, *SHAPE[1:])).astype(np.float32)


def _outputs(path: Path, data: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.stack([session.run(None, {"x": x[None]})[0].astype(np.float64).ravel() for x in data])


def _min_cosine(ctx: QuantizeContext) -> float:
    """Lowest per-input cosine of the written FP16 model to the FP32 reference; loading it is part of it."""
    a, b = _outputs(ctx.reference, _inputs()), _outputs(ctx.output, _inputs())
    return float(np.min(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def _weight_dtypes(path: Path) -> set[int]:
    return {t.data_type for t in onnx.load(str(path)).graph.initializer if len(t.dims) == 4}


def test_batchnorm_with_huge_variance_is_folded_before_conversion(tmp_path: Path) -> None:
    ctx = fp16_context(tmp_path, conv_batchnorm_huge_variance())
    details = run_fp16(ctx)
    ops = [n.op_type for n in onnx.load(str(ctx.output)).graph.node]
    assert "BatchNormalization" not in ops  # folded into the Conv by onnxruntime before converting
    assert details["fp16_weight_range"]["out_of_range"] == []  # nothing left to clamp
    assert _min_cosine(ctx) > 0.999  # clamping the variance to the FP16 maximum gave ~0.5


def test_cast_to_float_becomes_cast_to_fp16_and_the_model_loads(tmp_path: Path) -> None:
    ctx = fp16_context(tmp_path, conv_relu_mask_cast())
    details = run_fp16(ctx)
    cast = next(n for n in onnx.load(str(ctx.output)).graph.node if n.name == "mask_to_float")
    assert helper.get_attribute_value(cast.attribute[0]) == TensorProto.FLOAT16
    assert details["casts_to_fp16"] == ["mask_to_float"]
    assert _weight_dtypes(ctx.output) == {TensorProto.FLOAT16}
    assert _min_cosine(ctx) > 0.999


def test_already_fp16_weights_behind_casts_convert(tmp_path: Path) -> None:
    ctx = fp16_context(tmp_path, half_weights_with_casts())
    details = run_fp16(ctx)  # the converter alone refuses: "set check_fp16_ready=False"
    graph = onnx.load(str(ctx.output)).graph
    assert details["source_fp16_initializers"] == 2
    assert _weight_dtypes(ctx.output) == {TensorProto.FLOAT16}
    assert not [n for n in graph.node if n.op_type == "Cast" and n.input[0] in {"W16", "B16"}]
    assert _min_cosine(ctx) > 0.9999  # FP16 weights round-trip exactly through FP32


def test_fp16_region_of_an_autocast_export_converts(tmp_path: Path) -> None:
    ctx = fp16_context(tmp_path, autocast_region())
    run_fp16(ctx)
    assert _weight_dtypes(ctx.output) == {TensorProto.FLOAT16}
    assert _min_cosine(ctx) > 0.999


def test_ops_whose_schema_has_no_fp16_stay_float(tmp_path: Path) -> None:
    ctx = fp16_context(tmp_path, quantize_dequantize())
    details = run_fp16(ctx)
    assert details["no_fp16_in_schema"] == ["dequant", "quant"]
    assert {"dequant", "quant"} <= set(details["kept_in_float"])
    assert _min_cosine(ctx) > 0.999


def test_a_converter_exception_is_a_conversion_error_naming_the_converter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnxconverter_common import float16

    def broken(*args: object, **kwargs: object) -> onnx.ModelProto:
        raise AssertionError("find_upstream_node_by_output_name found two producers")

    monkeypatch.setattr(float16, "convert_float_to_float16", broken)
    with pytest.raises(ConversionError) as caught:
        run_fp16(fp16_context(tmp_path, conv_relu_mask_cast()))
    message = str(caught.value)
    assert caught.value.tool.startswith("onnxconverter-common")
    assert "two producers" in message and "packager check" not in message
    assert "variants" in message  # the fix names what the user can change


def test_a_converted_model_onnxruntime_refuses_names_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnxconverter_common import float16

    real = float16.convert_float_to_float16

    def wrong_cast(model: onnx.ModelProto, **kwargs: object) -> onnx.ModelProto:
        converted = real(model, **kwargs)  # then break it the way 1.16 does with an untouched Cast
        cast = next(n for n in converted.graph.node if n.name == "mask_to_float")
        cast.attribute[0].i = TensorProto.FLOAT
        return converted

    monkeypatch.setattr(float16, "convert_float_to_float16", wrong_cast)
    with pytest.raises(ConversionError) as caught:
        run_fp16(fp16_context(tmp_path, conv_relu_mask_cast()))
    assert caught.value.node == "mask_to_float"
    assert caught.value.tool.startswith("onnxconverter-common")


# --- graph outputs: a Cast before one, one that other nodes read ---------------------------------

FEATURES = 3 * 8 * 8
WIDTH = 16


def _embedder(nodes: list[onnx.NodeProto], outputs: list[str]) -> onnx.ModelProto:
    """``x`` [1, 3, 8, 8] -> Flatten -> Gemm ``e`` [1, 16] -> ``nodes``; ``outputs`` are [1, 16] float."""
    rng = np.random.default_rng(RNG_SEED)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.2, (WIDTH, FEATURES)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(0, 0.5, WIDTH).astype(np.float32), "B"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], name="flatten"),
            helper.make_node("Gemm", ["flat", "W", "B"], ["e"], name="fc", transB=1),
            *nodes,
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, WIDTH]) for o in outputs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def cast_before_output() -> onnx.ModelProto:
    """Gemm -> ``Cast(to=FLOAT)`` -> graph output ``emb``, as exporters write ``emb.float()``."""
    return _embedder(
        [helper.make_node("Cast", ["e"], ["emb"], name="cast_out", to=TensorProto.FLOAT)], ["emb"]
    )


def output_read_by_a_node(identity: bool) -> onnx.ModelProto:
    """Gemm -> graph output ``emb``, which a Relu also reads to make graph output ``re``.

    ``identity``: the form preparation gives it (Gemm -> ``emb__internal``, read by the Relu and by
    an Identity making ``emb``)."""
    internal = "emb__internal" if identity else "emb"
    nodes = [
        helper.make_node("Identity", ["e"], [internal], name="fc_out"),
        helper.make_node("Relu", [internal], ["re"], name="relu"),
    ]
    if identity:
        nodes.append(helper.make_node("Identity", [internal], ["emb"], name="emb_output"))
    model = _embedder(nodes, ["emb", "re"])
    # Make the Gemm write ``internal`` itself (no Identity between), as an exporter does.
    graph = model.graph
    graph.node.remove(next(n for n in graph.node if n.name == "fc_out"))
    next(n for n in graph.node if n.name == "fc").output[0] = internal
    onnx.checker.check_model(model, full_check=True)
    return model


def _check_variant(ctx: QuantizeContext) -> None:
    """The written variant loads, keeps the reference's float32 I/O names and types, and every output
    has mean cosine >= 0.999 to FP32 (reference mode: no graph optimizations)."""
    reference, variant = onnx.load(str(ctx.reference)).graph, onnx.load(str(ctx.output)).graph
    for ours, theirs in ((variant.input, reference.input), (variant.output, reference.output)):
        assert [(v.name, v.type.tensor_type.elem_type) for v in ours] == [
            (v.name, TensorProto.FLOAT) for v in theirs
        ]
    assert {t.data_type for t in variant.initializer if t.name == "W"} == {TensorProto.FLOAT16}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sessions = [
        ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        for p in (ctx.reference, ctx.output)
    ]
    for name in (o.name for o in reference.output):
        a, b = (np.stack([s.run([name], {"x": x[None]})[0].ravel() for x in _inputs(8)]) for s in sessions)
        assert b.dtype == np.float32
        cosine = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert float(cosine.mean()) >= 0.999, name


def test_a_cast_to_float_before_a_graph_output_converts(tmp_path: Path) -> None:
    # onnxconverter-common 1.16 alone: "The downstream node of the second cast node should be graph output".
    ctx = fp16_context(tmp_path, cast_before_output())
    details = run_fp16(ctx)
    _check_variant(ctx)
    assert details["float_output_casts"] == ["cast_out"]
    casts = [n for n in onnx.load(str(ctx.output)).graph.node if n.op_type == "Cast"]
    assert len(casts) == 2  # the input's to FP16, and one to float making the output


@pytest.mark.parametrize("identity", [False, True], ids=["plain", "identity"])
def test_a_graph_output_another_node_reads_converts(tmp_path: Path, identity: bool) -> None:
    # 1.16 alone retypes ``emb`` to float32 under the Relu: "Type (tensor(float16)) of output arg (re)
    # of node (relu) does not match expected type (tensor(float))".
    ctx = fp16_context(tmp_path, output_read_by_a_node(identity))
    details = run_fp16(ctx)
    _check_variant(ctx)
    graph = onnx.load(str(ctx.output)).graph
    relu = next(n for n in graph.node if n.name == "relu")
    assert relu.input[0] not in {o.name for o in graph.output}  # it reads the FP16 tensor
    if not identity:  # the prepared form needs none (unless onnxruntime's folding removed its Identity)
        assert details["outputs_given_identity"] == ["emb"]
