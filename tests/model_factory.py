"""Small real ONNX models built in code, so unit tests run in seconds without downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, prefix: str, arr: np.ndarray) -> str:
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(arr.astype(np.float32), n))
        return n

    def conv_bn_prelu(self, x: str, cin: int, cout: int, k: int, stride: int, group: int = 1) -> str:
        fan_in = cin // group * k * k
        w = self.const("w", self.rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin // group, k, k)))
        b = self.const("b", np.zeros(cout))
        y = self.name("conv")
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, w, b],
                [y],
                name=y,
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
                group=group,
            )
        )
        scale = self.const("bn_s", self.rng.uniform(0.8, 1.2, cout))
        bias = self.const("bn_b", self.rng.normal(0, 0.1, cout))
        mean = self.const("bn_m", self.rng.normal(0, 0.1, cout))
        var = self.const("bn_v", self.rng.uniform(0.5, 1.5, cout))
        z = self.name("bn")
        self.nodes.append(helper.make_node("BatchNormalization", [y, scale, bias, mean, var], [z], name=z))
        slope = self.const("slope", np.full((cout, 1, 1), 0.25))
        out = self.name("prelu")
        self.nodes.append(helper.make_node("PRelu", [z, slope], [out], name=out))
        return out


def mobilefacenet_like(
    size: int = 32, embedding: int = 128, seed: int = 0, batch: int | str = 1, opset: int = 13
) -> onnx.ModelProto:
    """A MobileFaceNet-shaped net: stem conv, depthwise separable blocks, BN, PReLU, Gemm to an embedding.

    Input ``data`` [batch, 3, size, size] takes pixels 0..255 and normalizes inside, like SFace.
    """
    b = _Builder(seed)
    inp = "data"
    scaled = b.name("scaled")
    b.nodes.append(helper.make_node("Mul", [inp, b.const("inv255", np.array(1 / 127.5))], [scaled + "_m"]))
    b.nodes.append(helper.make_node("Sub", [scaled + "_m", b.const("one", np.array(1.0))], [scaled]))
    x = b.conv_bn_prelu(scaled, 3, 16, 3, 2)
    x = b.conv_bn_prelu(x, 16, 16, 3, 1, group=16)
    x = b.conv_bn_prelu(x, 16, 32, 1, 1)
    x = b.conv_bn_prelu(x, 32, 32, 3, 2, group=32)
    x = b.conv_bn_prelu(x, 32, 64, 1, 1)
    pooled = b.name("gap")
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled], name=pooled))
    flat = b.name("flat")
    b.nodes.append(helper.make_node("Flatten", [pooled], [flat], name=flat, axis=1))
    w = b.const("fc_w", b.rng.normal(0, 0.1, (embedding, 64)))
    bias = b.const("fc_b", np.zeros(embedding))
    b.nodes.append(helper.make_node("Gemm", [flat, w, bias], ["embedding"], name="fc", transB=1))
    graph = helper.make_graph(
        b.nodes,
        "mobilefacenet_like",
        [helper.make_tensor_value_info(inp, TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, embedding])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def with_initializers_as_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Reproduce old exporters (SFace) that list every initializer as a graph input."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        out.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return out


def two_image_inputs() -> onnx.ModelProto:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 3, 8, 8])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "two", [a, b], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def int_input() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [1, 16])
    graph = helper.make_graph([helper.make_node("Identity", ["ids"], ["y"])], "ints", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
