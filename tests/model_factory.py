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

    def inits_int64(self, prefix: str, values: list[int]) -> str:
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.array(values, dtype=np.int64), n))
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

    def normalize(self, x: str) -> str:
        """Pixels 0..255 -> [-1, 1] inside the graph, like SFace (unnamed nodes, as exporters leave them)."""
        scaled = self.name("scaled")
        self.nodes.append(
            helper.make_node("Mul", [x, self.const("inv255", np.array(1 / 127.5))], [scaled + "_m"])
        )
        self.nodes.append(
            helper.make_node("Sub", [scaled + "_m", self.const("one", np.array(1.0))], [scaled])
        )
        return scaled

    def op(self, op_type: str, inputs: list[str], **attrs: object) -> str:
        """One named node with one output named like the node; returns the output."""
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, group: int = 1) -> str:
        """Conv, He-initialized weights and a small bias; ``k // 2`` padding keeps the size at stride 1."""
        fan_in = cin // group * k * k
        w = self.const("w", self.rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin // group, k, k)))
        b = self.const("b", self.rng.normal(0, 0.05, cout))
        return self.op(
            "Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4, group=group
        )

    def bn(self, x: str, channels: int) -> str:
        scale = self.const("bn_s", self.rng.uniform(0.8, 1.2, channels))
        bias = self.const("bn_b", self.rng.normal(0, 0.1, channels))
        mean = self.const("bn_m", self.rng.normal(0, 0.1, channels))
        var = self.const("bn_v", self.rng.uniform(0.5, 1.5, channels))
        return self.op("BatchNormalization", [x, scale, bias, mean, var])

    def clip6(self, x: str) -> str:
        """ReLU6 as opset >= 11 writes it: Clip with min/max as inputs."""
        return self.op(
            "Clip", [x, self.const("clip_lo", np.array(0.0)), self.const("clip_hi", np.array(6.0))]
        )

    def gemm(self, x: str, cin: int, cout: int, output: str, name: str) -> str:
        w = self.const("fc_w", self.rng.normal(0, np.sqrt(1.0 / cin), (cout, cin)))
        bias = self.const("fc_b", self.rng.normal(0, 0.05, cout))
        self.nodes.append(helper.make_node("Gemm", [x, w, bias], [output], name=name, transB=1))
        return output

    def model(self, name: str, inp: str, size: int, outputs: dict[str, int], opset: int) -> onnx.ModelProto:
        """Wrap the nodes: input ``inp`` [1, 3, size, size], float outputs ``{name: width}`` in that order."""
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(inp, TensorProto.FLOAT, [1, 3, size, size])],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, width]) for o, width in outputs.items()],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


AUX_CLASSES = 10
"""Width of the second head (``logits``) that ``two_heads=True`` adds to the fixtures below."""


def resnet_like(
    size: int = 32, embedding: int = 64, seed: int = 0, opset: int = 13, two_heads: bool = False
) -> onnx.ModelProto:
    """A ResNet-shaped net: Conv→BatchNorm→Relu stem, two residual blocks (the second downsamples
    with a 1x1 Conv→BatchNorm shortcut), each ending in Add then Relu, GlobalAveragePool, Reshape, Gemm.

    Input ``data`` [1, 3, size, size] takes pixels 0..255 and normalizes inside. Output ``embedding``
    [1, embedding]; ``two_heads`` adds a Gemm head ``logits`` [1, AUX_CLASSES] on the pooled features,
    listed *first*, so a scorer that silently takes the first output reads the wrong head.
    """
    b = _Builder(seed)
    x = b.op("Relu", [b.bn(b.conv(b.normalize("data"), 3, 16, 3, 2), 16)])
    for cin, cout, stride in ((16, 16, 1), (16, 32, 2)):
        y = b.op("Relu", [b.bn(b.conv(x, cin, cout, 3, stride), cout)])
        y = b.bn(b.conv(y, cout, cout, 3), cout)
        skip = x if stride == 1 and cin == cout else b.bn(b.conv(x, cin, cout, 1, stride), cout)
        x = b.op("Relu", [b.op("Add", [y, skip])])
    flat = b.op("Reshape", [b.op("GlobalAveragePool", [x]), b.inits_int64("shape", [1, 32])])
    b.gemm(flat, 32, embedding, "embedding", "fc")
    outputs = {"logits": AUX_CLASSES} if two_heads else {}
    if two_heads:  # drawn after the main head, so ``embedding`` is the same net either way
        b.gemm(flat, 32, AUX_CLASSES, "logits", "aux_fc")
    return b.model("resnet_like", "data", size, {**outputs, "embedding": embedding}, opset)


def mobilenet_like(
    size: int = 32, embedding: int = 64, seed: int = 0, opset: int = 13, two_heads: bool = False
) -> onnx.ModelProto:
    """A MobileNetV2-shaped net: Conv→Relu stem, then inverted-residual blocks of 1x1 expand
    Conv→Clip(0,6), depthwise 3x3 Conv→Clip(0,6), 1x1 pointwise Conv with no activation (the linear
    bottleneck; the stride-1 block adds its input back), GlobalAveragePool, Flatten, Gemm head.

    Input ``data`` [1, 3, size, size] takes pixels 0..255 and normalizes inside. Output ``embedding``
    [1, embedding]; ``two_heads`` adds ``logits`` [1, AUX_CLASSES] as in :func:`resnet_like`.
    """
    b = _Builder(seed)
    x = b.op("Relu", [b.conv(b.normalize("data"), 3, 16, 3, 2)])
    x = b.clip6(b.conv(x, 16, 16, 3, 1, group=16))
    x = b.conv(x, 16, 24, 1)
    for stride in (1, 2):
        y = b.clip6(b.conv(x, 24, 48, 1))
        y = b.clip6(b.conv(y, 48, 48, 3, stride, group=48))
        y = b.conv(y, 48, 24, 1)
        x = b.op("Add", [x, y]) if stride == 1 else y
    flat = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    b.gemm(flat, 24, embedding, "embedding", "fc")
    outputs = {"logits": AUX_CLASSES} if two_heads else {}
    if two_heads:  # drawn after the main head, so ``embedding`` is the same net either way
        b.gemm(flat, 24, AUX_CLASSES, "logits", "aux_fc")
    return b.model("mobilenet_like", "data", size, {**outputs, "embedding": embedding}, opset)


def mobilefacenet_like(
    size: int = 32,
    embedding: int = 128,
    seed: int = 0,
    batch: int | str = 1,
    opset: int = 13,
    two_heads: bool = False,
) -> onnx.ModelProto:
    """A MobileFaceNet-shaped net: stem conv, depthwise separable blocks, BN, PReLU, Gemm to an embedding.

    Input ``data`` [batch, 3, size, size] takes pixels 0..255 and normalizes inside, like SFace.
    ``two_heads`` adds ``logits`` [batch, AUX_CLASSES] (listed first) as in :func:`resnet_like`.
    """
    b = _Builder(seed)
    inp = "data"
    x = b.conv_bn_prelu(b.normalize(inp), 3, 16, 3, 2)
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
    outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, embedding])]
    if two_heads:  # drawn after the main head, so ``embedding`` is the same net either way
        b.gemm(flat, 64, AUX_CLASSES, "logits", "aux_fc")
        outputs.insert(0, helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, AUX_CLASSES]))
    graph = helper.make_graph(
        b.nodes,
        "mobilefacenet_like",
        [helper.make_tensor_value_info(inp, TensorProto.FLOAT, [batch, 3, size, size])],
        outputs,
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


def detector_like(size: int = 32, seed: int = 0, opset: int = 13) -> onnx.ModelProto:
    """A CenterFace-shaped detector: Conv→Relu backbone at stride 4, then two heads, a face-probability
    map ``heatmap`` [1, 1, size/4, size/4] (Sigmoid) and a box regression map ``boxes`` [1, 4, size/4,
    size/4] (linear). Input ``data`` [1, 3, size, size], pixels 0..255 normalized inside."""
    b = _Builder(seed)
    x = b.op("Relu", [b.conv(b.normalize("data"), 3, 16, 3, 2)])
    x = b.op("Relu", [b.conv(x, 16, 32, 3, 2)])
    x = b.op("Relu", [b.conv(x, 32, 32, 3, 1)])
    b.nodes.append(helper.make_node("Sigmoid", [b.conv(x, 32, 1, 1)], ["heatmap"], name="heat_sigmoid"))
    b.nodes.append(helper.make_node("Identity", [b.conv(x, 32, 4, 1)], ["boxes"], name="box_out"))
    cells = size // 4
    graph = helper.make_graph(
        b.nodes,
        "detector_like",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, size, size])],
        [
            helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, [1, 1, cells, cells]),
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 4, cells, cells]),
        ],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def classifier_like(size: int = 32, classes: int = 10, seed: int = 0, opset: int = 13) -> onnx.ModelProto:
    """A small image classifier: the mobilenet_like backbone with a Gemm head ``logits`` [1, classes]
    (pre-softmax) and ``probs`` = Softmax(logits) [1, classes]."""
    model = mobilenet_like(size=size, embedding=classes, seed=seed, opset=opset)
    graph = model.graph
    graph.output[0].name = "logits"
    for node in graph.node:
        node.output[:] = ["logits" if o == "embedding" else o for o in node.output]
    graph.node.append(helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1))
    graph.output.append(helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, classes]))
    onnx.checker.check_model(model)
    return model


def with_det_branch(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` plus a branch through ``Det`` (which onnxruntime runs and onnx2tf 1.29 cannot convert)
    whose result is multiplied by 0 and added to the first output: same numbers, one unconvertible op."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    first = g.output[0].name
    inp = g.input[0].name
    renamed = f"{first}_before_det"
    for node in g.node:
        node.output[:] = [renamed if o == first else o for o in node.output]
    g.initializer.extend([numpy_helper.from_array(np.zeros((1, 1), np.float32), "det_zero")])
    g.node.extend(
        [
            helper.make_node("ReduceMean", [inp], ["det_mean"], name="det_mean", axes=[2, 3], keepdims=1),
            helper.make_node("Det", ["det_mean"], ["det_value"], name="det"),
            helper.make_node("ReduceSum", ["det_value"], ["det_sum"], name="det_sum", keepdims=1),
            helper.make_node("Mul", ["det_sum", "det_zero"], ["det_nothing"], name="det_times_zero"),
            helper.make_node("Add", [renamed, "det_nothing"], [first], name="det_add"),
        ]
    )
    onnx.checker.check_model(out)
    return out


def with_bicubic_branch(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` plus a bicubic Resize branch (node ``upsample_bicubic``) multiplied by 0 and added to the
    first output: same numbers; onnxruntime and onnx2tf take it, coremltools 9 has no ResizeBicubic."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    first = g.output[0].name
    inp = g.input[0].name
    renamed = f"{first}_before_bicubic"
    for node in g.node:
        node.output[:] = [renamed if o == first else o for o in node.output]
    g.initializer.extend(
        [
            numpy_helper.from_array(np.zeros((1, 1), np.float32), "bicubic_zero"),
            numpy_helper.from_array(np.zeros((0,), np.float32), "bicubic_roi"),
            numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "bicubic_scales"),
        ]
    )
    g.node.extend(
        [
            helper.make_node(
                "Resize",
                [inp, "bicubic_roi", "bicubic_scales"],
                ["bicubic_up"],
                name="upsample_bicubic",
                mode="cubic",
            ),
            helper.make_node("ReduceMean", ["bicubic_up"], ["bicubic_mean"], name="bicubic_mean", keepdims=0),
            helper.make_node("Mul", ["bicubic_mean", "bicubic_zero"], ["bicubic_nothing"], name="bicubic_x0"),
            helper.make_node("Add", [renamed, "bicubic_nothing"], [first], name="bicubic_add"),
        ]
    )
    onnx.checker.check_model(out)
    return out
