"""FP16 range audit: overflow that real FP16 arithmetic hits and this host's onnxruntime hides.

onnxruntime on x86 runs most FP16 nodes in float, so these tests emulate FP16 arithmetic with numpy
(``emulate``): every node computes in its tensors' own dtype, so an FP16 ``x * x`` of 1000 is inf,
as on a phone. The audit itself is checked against values computed here in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from quantize_helpers import fp16_context, run_fp16

from packager.quantize import fp16_range

FEATURES = 3 * 8 * 8
WIDTH = 32


def l2_embedder() -> onnx.ModelProto:
    """Pixels 0..255 -> Flatten -> Gemm (activations ~1e3) -> in-graph L2 norm: x / sqrt(ReduceSum(x * x))."""
    rng = np.random.default_rng(5)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (WIDTH, FEATURES)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(0, 1.0, WIDTH).astype(np.float32), "B"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "W", "B"], ["e"], name="fc", transB=1),
        helper.make_node("Mul", ["e", "e"], ["sq"], name="square"),
        helper.make_node("ReduceSum", ["sq", "axes"], ["sum"], name="sum_sq", keepdims=1),
        helper.make_node("Sqrt", ["sum"], ["norm"], name="sqrt"),
        helper.make_node("Div", ["e", "norm"], ["y"], name="normalize"),
    ]
    return _model(nodes, inits, [1, 3, 8, 8], [1, WIDTH])


def two_norms() -> onnx.ModelProto:
    """``e / (||e|| + rms(e))``: the squares (~1e6) feed two reductions, both of which must stay float."""
    model = l2_embedder()
    graph = model.graph
    del graph.node[3:]
    graph.node.extend(
        [
            helper.make_node("ReduceSum", ["sq", "axes"], ["sum"], name="sum_sq", keepdims=1),
            helper.make_node("ReduceMean", ["sq"], ["mean"], name="mean_sq", axes=[1], keepdims=1),
            helper.make_node("Sqrt", ["sum"], ["l2"], name="sqrt_sum"),
            helper.make_node("Sqrt", ["mean"], ["rms"], name="sqrt_mean"),
            helper.make_node("Add", ["l2", "rms"], ["norm"], name="add"),
            helper.make_node("Div", ["e", "norm"], ["y"], name="normalize"),
        ]
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def lp_normalised(width: int = 256) -> onnx.ModelProto:
    """Pixels -> Flatten -> Gemm ``e`` (|e| <= ~60) -> LpNormalization: each square fits FP16 with room
    to spare (<= ~4e3), their sum over the 256 features (~1e5) does not."""
    rng = np.random.default_rng(5)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.01, (width, FEATURES)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(0, 1.0, width).astype(np.float32), "B"),
    ]
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "W", "B"], ["e"], name="fc", transB=1),
        helper.make_node("LpNormalization", ["e"], ["y"], name="lpnorm", axis=1, p=2),
    ]
    return _model(nodes, inits, [1, 3, 8, 8], [1, width])


def normalisation(op: str, **attrs: object) -> onnx.ModelProto:
    """``op`` applied to the input ``x`` [1, 4, 8, 8] itself (with unit scale and zero bias)."""
    inputs, inits, opset = ["x"], [], 13
    if op in ("LayerNormalization", "InstanceNormalization", "GroupNormalization"):
        shape = {"LayerNormalization": [4, 8, 8], "InstanceNormalization": [4], "GroupNormalization": [4]}[op]
        inits = [
            numpy_helper.from_array(np.ones(shape, np.float32), "scale"),
            numpy_helper.from_array(np.zeros(shape, np.float32), "bias"),
        ]
        inputs += ["scale", "bias"]
        opset = {"LayerNormalization": 17, "InstanceNormalization": 13, "GroupNormalization": 21}[op]
    graph = helper.make_graph(
        [helper.make_node(op, inputs, ["y"], name="norm", **attrs)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "c", "h", "w"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    onnx.checker.check_model(model)  # full_check fails on MeanVarianceNormalization-13's function body
    return model


def pooled_large_map() -> onnx.ModelProto:
    """Relu(x) on a 64x64 map, then GlobalAveragePool: the mean fits FP16, the sum behind it does not."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["y"], name="gap"),
    ]
    return _model(nodes, [], [1, 2, 64, 64], [1, 2, 1, 1])


def batchnorm_after_relu() -> onnx.ModelProto:
    """BatchNorm with variance 1e8 after a Relu: nothing for onnxruntime to fold it into."""
    rng = np.random.default_rng(6)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(np.array([2e4, 1.0, 1.0, 1.0], np.float32), "s"),
        numpy_helper.from_array(np.zeros(4, np.float32), "b"),
        numpy_helper.from_array(np.zeros(4, np.float32), "m"),
        numpy_helper.from_array(np.array([1e8, 1.0, 0.5, 2.0], np.float32), "v"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("BatchNormalization", ["r", "s", "b", "m", "v"], ["y"], name="bn"),
    ]
    return _model(nodes, inits, [1, 3, 8, 8], [1, 4, 8, 8])


def _model(
    nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], shape: list[int], out: list[int]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def _pixels(count: int, shape: tuple[int, ...] = (3, 8, 8)) -> np.ndarray:
    return np.random.default_rng(12).uniform(0, 255, (count, *shape)).astype(np.float32)


# --- numpy FP16 emulation: each node computes in the dtype its inputs have in the graph ----------

_OPS: dict[str, Callable[[list[np.ndarray], dict[str, object]], np.ndarray]] = {
    "Cast": lambda i, a: i[0].astype(helper.tensor_dtype_to_np_dtype(a["to"])),  # type: ignore[arg-type]
    "Flatten": lambda i, a: i[0].reshape(i[0].shape[0], -1),
    "Gemm": lambda i, a: i[0] @ (i[1].T if a.get("transB") else i[1]) + i[2],
    "Mul": lambda i, a: i[0] * i[1],
    "Div": lambda i, a: i[0] / i[1],
    "Sqrt": lambda i, a: np.sqrt(i[0]),
    "Identity": lambda i, a: i[0],
    "LpNormalization": lambda i, a: (
        i[0] / np.sqrt(np.sum(i[0] * i[0], axis=a.get("axis", -1), keepdims=True, dtype=i[0].dtype))
    ),
    "Add": lambda i, a: i[0] + i[1],
    "ReduceMean": lambda i, a: np.mean(
        i[0],
        axis=tuple(a["axes"]),
        keepdims=bool(a.get("keepdims", 1)),
        dtype=i[0].dtype,  # type: ignore[arg-type]
    ),
    "ReduceSum": lambda i, a: np.sum(
        i[0], axis=tuple(i[1]), keepdims=bool(a.get("keepdims", 1)), dtype=i[0].dtype
    ),
}


def emulate(path: Path, x: np.ndarray) -> np.ndarray:
    """Run ``path`` on one input ``x`` [1, ...] with numpy; FP16 values overflow to inf as on a phone."""
    model = onnx.load(str(path))
    env = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    env[model.graph.input[0].name] = x
    with np.errstate(over="ignore", invalid="ignore"):
        for node in model.graph.node:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            env[node.output[0]] = _OPS[node.op_type]([env[n] for n in node.input], attrs)
    return env[model.graph.output[0].name].astype(np.float64).ravel()


def _fp32(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0].astype(np.float64).ravel()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def test_l2_norm_stays_float_and_is_finite_in_fp16_arithmetic(tmp_path: Path) -> None:
    data = _pixels(8)
    # The failure this guards against: the converter alone gives a model the host scores as perfect
    # and FP16 arithmetic turns into an all-zero embedding (x * x overflows, x / inf = 0).
    from onnxconverter_common import float16

    plain = tmp_path / "plain.onnx"
    onnx.save(float16.convert_float_to_float16(l2_embedder(), keep_io_types=True), str(plain))
    onnx.save(l2_embedder(), str(tmp_path / "fp32.onnx"))
    x = data[:1]
    assert _cosine(_fp32(tmp_path / "fp32.onnx", x), _fp32(plain, x)) > 0.9999
    assert not np.any(emulate(plain, x))

    ctx = fp16_context(tmp_path, l2_embedder(), data)
    run_fp16(ctx)
    for x in data:
        fp16 = emulate(ctx.output, x[None])
        assert np.all(np.isfinite(fp16))
        assert _cosine(_fp32(ctx.reference, x[None]), fp16) > 0.999


def test_an_out_of_range_value_with_two_float_consumers_never_passes_through_fp16(tmp_path: Path) -> None:
    data = _pixels(8)
    ctx = fp16_context(tmp_path, two_norms(), data)
    details = run_fp16(ctx)
    assert {"square", "sum_sq", "mean_sq", "sqrt_sum", "sqrt_mean"} <= set(details["kept_in_float"])
    for x in data:
        fp16 = emulate(ctx.output, x[None])
        assert np.all(np.isfinite(fp16))
        assert _cosine(_fp32(ctx.reference, x[None]), fp16) > 0.999


def test_audit_record_names_nodes_values_and_limit(tmp_path: Path) -> None:
    data = _pixels(fp16_range.MAX_AUDIT_IMAGES + 8)
    details = run_fp16(fp16_context(tmp_path, l2_embedder(), data))
    audit = details["fp16_range_audit"]
    assert audit["ran"] is True and audit["images"] == fp16_range.MAX_AUDIT_IMAGES
    assert audit["threshold"] == fp16_range.FP16_MAX / audit["margin"]
    kept = {k["node"]: k for k in audit["kept_in_float"]}
    assert set(kept) == {"square", "sum_sq", "sqrt"}  # Gemm output (~1e3) and the division fit FP16
    assert kept["sum_sq"]["op"] == "ReduceSum" and "output" in kept["sum_sq"]["why"]
    assert "input" in kept["sqrt"]["why"]  # its input would arrive as inf through a Cast to FP16
    # The value seen is the FP32 maximum over the audited images, computed here in float64.
    model = l2_embedder()
    w, b = (numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer[:2])
    audited = data[np.linspace(0, len(data) - 1, fp16_range.MAX_AUDIT_IMAGES).round().astype(int)]
    e = audited.reshape(len(audited), -1).astype(np.float64) @ w.T + b
    assert np.isclose(kept["sum_sq"]["max_abs"], np.max(np.sum(e * e, axis=1)), rtol=1e-4)
    assert np.isclose(kept["square"]["max_abs"], np.max(e * e), rtol=1e-4)
    assert set(details["kept_in_float"]) == set(kept)


def test_without_calibration_data_the_audit_is_recorded_as_not_run(tmp_path: Path) -> None:
    details = run_fp16(fp16_context(tmp_path, l2_embedder(), None))
    audit = details["fp16_range_audit"]
    assert audit["ran"] is False and "calibration" in audit["reason"]
    assert any("audit did not run" in f for f in details["findings"])
    assert "kept_in_float" not in audit and "images" not in audit


def test_mean_over_a_large_map_is_kept_when_its_sum_overflows() -> None:
    # Mean of Relu(U(0, 255)) over 64x64 is ~128 (fits FP16); the sum an FP16 kernel accumulates
    # (XNNPACK's f16 gavgpool adds in FP16, then scales) is ~5e5.
    data = _pixels(4, (2, 64, 64))
    audit = fp16_range.audit_activations(pooled_large_map(), data)
    (gap,) = [k for k in audit.kept_in_float if k.node == "gap"]
    expected = np.max(data.astype(np.float64).sum(axis=(2, 3)))
    assert np.isclose(gap.max_abs, expected, rtol=1e-4)
    assert "sum of 4096" in gap.why
    assert [k.node for k in audit.kept_in_float] == ["gap"]  # Relu's output (<= 255) fits


def test_unfoldable_weight_beyond_fp16_is_named_and_kept_exact(tmp_path: Path) -> None:
    ctx = fp16_context(tmp_path, batchnorm_after_relu(), None)
    details = run_fp16(ctx)
    (finding,) = details["fp16_weight_range"]["out_of_range"]
    assert finding["initializer"] == "v" and finding["nodes"] == ["bn"]
    assert finding["value"] == 1e8 and finding["would_clamp_to"] == fp16_range.FP16_MAX
    assert "bn" in details["kept_in_float"]
    assert any(f.startswith("weight v of bn holds 1e+08, beyond FP16") for f in details["findings"])
    # A float node making a graph output keeps that output float32 (the converter retypes it FP16).
    assert onnx.load(str(ctx.output)).graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    x = _pixels(1) / 255
    assert _cosine(_fp32(ctx.reference, x), _fp32(ctx.output, x)) > 0.999  # clamped: ~0.6


def test_lp_normalisation_is_kept_when_the_sum_of_squares_overflows(tmp_path: Path) -> None:
    data = _pixels(8)
    ctx = fp16_context(tmp_path, lp_normalised(), data)
    details = run_fp16(ctx)
    (kept,) = details["fp16_range_audit"]["kept_in_float"]
    assert kept["node"] == "lpnorm"
    # The value is the largest sum of squares over the 256 features, computed here in float64.
    model = lp_normalised()
    w, b = (numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer)
    e = data.reshape(len(data), -1).astype(np.float64) @ w.T + b
    assert np.max(e * e) < fp16_range.FP16_MAX / 4 < fp16_range.FP16_MAX < np.min(np.sum(e * e, axis=1))
    assert np.isclose(kept["max_abs"], np.max(np.sum(e * e, axis=1)), rtol=1e-4)
    assert kept["why"].startswith("sum of squares over axis 1 (256 values) of input 'e' reaches ")
    assert any(
        f.startswith("LpNormalization lpnorm: sum of squares over axis 1") for f in details["findings"]
    )
    # The variant loads, keeps float32 I/O, matches FP32 and stays finite in FP16 arithmetic.
    variant = onnx.load(str(ctx.output)).graph
    assert [(v.name, v.type.tensor_type.elem_type) for v in [*variant.input, *variant.output]] == [
        ("x", TensorProto.FLOAT),
        ("y", TensorProto.FLOAT),
    ]
    host = [_cosine(_fp32(ctx.reference, x[None]), _fp32(ctx.output, x[None])) for x in data]
    assert np.mean(host) >= 0.999
    for x in data:
        fp16 = emulate(ctx.output, x[None])
        assert np.all(np.isfinite(fp16)) and _cosine(_fp32(ctx.reference, x[None]), fp16) > 0.999


NORMALISATIONS = {
    # op, attributes, the sums it forms over x [N, 4, 8, 8] (float64), what the audit calls them
    "lp": ("LpNormalization", {"axis": 1}, lambda x: np.sum(x * x, axis=1), "squares over axis 1 (4 values)"),
    "lp1": (
        "LpNormalization",
        {"p": 1},
        lambda x: np.sum(x, axis=3),
        "absolute values over axis 3 (8 values)",
    ),
    "layer": (
        "LayerNormalization",
        {"axis": 1},
        lambda x: np.sum(x * x, axis=(1, 2, 3)),
        "squares over axes 1, 2, 3 (256 values)",
    ),
    "instance": (
        "InstanceNormalization",
        {},
        lambda x: np.sum(x * x, axis=(2, 3)),
        "squares over axes 2, 3 (64 values)",
    ),
    "group": (
        "GroupNormalization",
        {"num_groups": 2},
        lambda x: np.sum(x.reshape(len(x), 2, -1) ** 2, axis=2),
        "squares over each of 2 groups (128 values)",
    ),
    "reduce_l2": (
        "ReduceL2",
        {"axes": [1]},
        lambda x: np.sum(x * x, axis=1),
        "squares over the reduced axes (4 values)",
    ),
    "mvn": (
        "MeanVarianceNormalization",
        {},
        lambda x: np.sum(x * x, axis=(2, 3)),
        "squares over axes 0, 2, 3 (64 values)",
    ),
}


@pytest.mark.parametrize("kind", NORMALISATIONS)
def test_a_normalisation_is_audited_by_its_sum_over_the_normalised_axes(kind: str) -> None:
    op, attrs, expected, words = NORMALISATIONS[kind]
    data = _pixels(4, (4, 8, 8))
    audit = fp16_range.audit_activations(normalisation(op, **attrs), data)
    norm = audit.largest
    assert norm is not None and norm.node == "norm"
    assert np.isclose(norm.max_abs, np.max(expected(data.astype(np.float64))), rtol=1e-5)
    assert norm.why == f"sum of {words} of input 'x' reaches {norm.max_abs:.4g}"
