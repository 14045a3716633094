"""targets.android.tflite and .prelu on tiny real models: onnx2tf runs, LiteRT with its XNNPACK delegate.

Structure (ops, partitions, names) and numbers (closeness to the ONNX model in onnxruntime) are
asserted separately. Each onnx2tf run on these models takes a few seconds; conversions are shared
per module.
"""

from __future__ import annotations

from pathlib import Path

import model_factory
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from packager.errors import ConversionError, DataError, UnknownName
from packager.validate.runners import TFLiteRunner
from targets.android import prelu, tflite, tflite_int8

SIZE = 32
SLOPES = [(-0.5, 0.9), (0.1, 1.3), (0.2, 0.95), (-0.2, 1.12), (0.0, 0.6)]
"""Slope range per PRelu node: nodes 2 and 4 reach above 1 (SFace's reach 1.12), the rest stay below."""


def _prelu_net(two_heads: bool = False) -> onnx.ModelProto:
    """mobilefacenet_like with per-channel slopes drawn from SLOPES, node by node."""
    model = model_factory.mobilefacenet_like(size=SIZE, two_heads=two_heads)
    rng = np.random.default_rng(3)
    slopes = iter(SLOPES)
    for tensor in model.graph.initializer:
        if tensor.name.startswith("slope"):
            lo, hi = next(slopes)
            shape = numpy_helper.to_array(tensor).shape
            values = rng.uniform(lo, hi, shape).astype(np.float32)
            values.flat[0] = hi  # the extreme slope is really there
            tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    return model


def _run_onnx(model: onnx.ModelProto | Path, data: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    outs = [session.run(None, {"data": x[None]}) for x in data]
    names = [o.name for o in session.get_outputs()]
    return {n: np.concatenate([o[i] for o in outs]) for i, n in enumerate(names)}


def _run_tflite(path: Path, onnx_path: Path, data: np.ndarray) -> dict[str, np.ndarray]:
    model = onnx.load(str(onnx_path))
    shapes = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
    runner = TFLiteRunner(path, reference_names=list(shapes), reference_shapes=shapes)
    return runner.run_all(data)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _ops(path: Path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    return [op["op_name"] for op in interpreter._get_ops_details()]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_factory.save(_prelu_net(two_heads=True), tmp_path_factory.mktemp("net") / "net.onnx")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """(calibration, evaluation) model inputs [N, 3, SIZE, SIZE], RGB 0..255 like SFace's."""
    rng = np.random.default_rng(0)
    smooth = rng.uniform(0, 255, (40, 3, 4, 4)).repeat(SIZE // 4, axis=2).repeat(SIZE // 4, axis=3)
    images = np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.float32)
    return images[:24], images[24:]


@pytest.fixture(scope="module")
def converted(net: Path, tmp_path_factory: pytest.TempPathFactory) -> tflite.FloatConversion:
    return tflite.convert_float(net, tmp_path_factory.mktemp("float"))


@pytest.fixture(scope="module")
def int8(net: Path, data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tflite_int8.Int8Conversion]:
    root = tmp_path_factory.mktemp("int8")
    return {
        m: tflite_int8.convert_int8(net, data[0], root / m, m, threads=1)
        for m in ("onnx2tf", "float-prelu", "prelu-rewrite")
    }


# --- prelu.py ---------------------------------------------------------------------------------------


def test_prelu_rewrite_is_exact_for_slopes_above_and_below_one(net: Path, data, tmp_path: Path) -> None:
    result = prelu.rewrite_prelu(net, tmp_path / "rw.onnx")
    rewritten = onnx.load(str(result.path))
    assert result.nodes == 5
    assert result.forms == {"add/depthwise": 3, "sub/depthwise": 2}
    assert result.slope_max == pytest.approx(1.3) and result.slope_min < 0
    assert not [n for n in rewritten.graph.node if n.op_type == "PRelu"]
    assert not [t for t in rewritten.graph.initializer if t.name.startswith("slope")]
    expected, actual = _run_onnx(net, data[1]), _run_onnx(rewritten, data[1])
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=1e-4)


def test_the_one_add_form_is_not_exact_above_one() -> None:
    """Why ``sub`` exists: ``x + Relu((a - 1)·x)`` adds ``(a - 1)·x`` to positive x when a > 1."""
    x, a = np.array([-2.0, 3.0]), 1.12
    assert (x + np.maximum((a - 1) * x, 0))[1] != pytest.approx(3.0)
    assert (x - (a - 1) * np.maximum(-x, 0)) == pytest.approx(np.where(x < 0, a * x, x))


def test_equalize_is_exact_and_folds_batchnorms(net: Path, data, tmp_path: Path) -> None:
    result = prelu.equalize(net, tmp_path / "eq.onnx", data[0])
    model = onnx.load(str(result.path))
    assert result.folded_batchnorms == 5 and result.pairs == 4
    assert not [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    expected, actual = _run_onnx(net, data[1]), _run_onnx(model, data[1])
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-4, atol=1e-4)


# --- float ----------------------------------------------------------------------------------------


def test_float_conversion_matches_onnx(converted: tflite.FloatConversion, net: Path, data) -> None:
    assert (converted.saved_model / "saved_model.pb").is_file()
    assert converted.input_name == "data" and converted.input_layout == "NCHW"
    expected = _run_onnx(net, data[1])
    for path, atol in ((converted.float32, 1e-4), (converted.float16, 0.05)):
        actual = _run_tflite(path, net, data[1])
        assert set(actual) == {"logits", "embedding"}
        for name in expected:
            np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=atol, err_msg=name)
    assert tflite.xnnpack_delegation(converted.float32, 1).full


def test_unconvertible_op_names_the_op(tmp_path: Path) -> None:
    cwd = Path.cwd()
    x = helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Swish", ["data"], ["y"], name="act")], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 24)])
    with pytest.raises(ConversionError) as caught:
        tflite.convert_float(model_factory.save(model, tmp_path / "swish.onnx"), tmp_path / "out")
    message = str(caught.value)
    assert "Swish" in message and "'act'" in message and "\n" not in message
    assert caught.value.tool == "onnx2tf" and caught.value.node == "act"
    assert Path.cwd() == cwd  # restored after onnx2tf ran in its scratch folder


# --- INT8 -----------------------------------------------------------------------------------------


def test_calibration_for_onnx2tf_round_trips_in_both_layouts() -> None:
    data = np.random.default_rng(1).uniform(10, 200, (3, 3, 4, 5)).astype(np.float32)
    for layout, perm in (("NCHW", (0, 1, 2, 3)), ("NHWC", (0, 2, 3, 1))):
        calib = tflite_int8.calibration_for_onnx2tf(data, layout)
        assert calib.values.shape == data.transpose(perm).shape
        assert calib.values.min() >= 0 and calib.values.max() <= 1
        np.testing.assert_allclose((calib.values - calib.mean) / calib.std, data.transpose(perm), rtol=1e-5)
    with pytest.raises(ValueError, match="finite"):
        tflite_int8.calibration_for_onnx2tf(data[0], "NCHW")


def test_raw_onnx2tf_int8_splits_at_every_prelu(int8: dict[str, tflite_int8.Int8Conversion]) -> None:
    raw = int8["onnx2tf"].delegation
    assert raw.outside == {"PRELU": 5} and raw.partitions == 6


@pytest.mark.parametrize("method", ["float-prelu", "prelu-rewrite"])
def test_int8_methods_are_one_xnnpack_partition(
    method: str, int8: dict[str, tflite_int8.Int8Conversion], net: Path, data
) -> None:
    result = int8[method]
    assert result.delegation.full, result.delegation
    ops = _ops(result.path)
    assert ("PRELU" in ops) == (method == "float-prelu")
    assert result.prelu_rewritten == (5 if method == "prelu-rewrite" else 0)
    assert result.equalized_pairs == 4 and result.percentile in tflite_int8.PERCENTILES
    assert result.calibration_samples == 24


@pytest.mark.parametrize("method", ["onnx2tf", "float-prelu", "prelu-rewrite"])
def test_int8_outputs_named_and_close_to_onnx(
    method: str, int8: dict[str, tflite_int8.Int8Conversion], net: Path, data
) -> None:
    result = int8[method]
    assert {t.name for t in result.outputs} == {"logits", "embedding"}
    (inp,) = result.inputs
    assert (
        inp.dtype == "float32"
        and inp.shape == (1, 3, SIZE, SIZE)
        and inp.scale
        and inp.zero_point is not None
    )
    assert all(t.scale for t in result.outputs)
    expected, actual = _run_onnx(net, data[1]), _run_tflite(result.path, net, data[1])
    for name in expected:
        assert _cosine(actual[name], expected[name]).mean() > 0.99, name


def test_int8_io_dtype_int8(net: Path, data, tmp_path: Path) -> None:
    result = tflite_int8.convert_int8(net, data[0], tmp_path, "float-prelu", io_dtype="int8", threads=1)
    (inp,) = result.inputs
    assert inp.dtype == "int8" and inp.scale == pytest.approx(1.0, rel=0.02)
    assert {t.dtype for t in result.outputs} == {"int8"} and result.delegation.full
    expected, actual = _run_onnx(net, data[1]), _run_tflite(result.path, net, data[1])
    assert _cosine(actual["embedding"], expected["embedding"]).mean() > 0.99


def test_int8_refuses_bad_calibration_and_unknown_method(net: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not fit"):
        tflite_int8.convert_int8(net, np.zeros((4, 3, 16, 16), np.float32), tmp_path)
    with pytest.raises(UnknownName, match="float-prelu"):
        tflite_int8.convert_int8(net, np.zeros((4, 3, SIZE, SIZE), np.float32), tmp_path, "int4")


def test_host_latency(converted: tflite.FloatConversion) -> None:
    latency = tflite.host_latency(converted.float32, threads=1, runs=5, warmup=1)
    assert latency.runs == 5 and latency.threads == 1 and 0 < latency.p50_ms <= latency.p90_ms
