"""Preparing the FP32 reference: input dims set from the config, outputs re-inferred, all outputs checked."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from packager.config import CalibrationSpec, ModelSpec, parse_config
from packager.datasets import load_calibration
from packager.errors import ModelError
from packager.graph import io_info
from packager.prepare import _equivalence, prepare_reference

Dims = list[int | str]


def detector(shape: Dims, *, layout: str = "NCHW", pin_size: bool = False, seed: int = 0) -> onnx.ModelProto:
    """A tiny CenterFace-shaped net: a stride-2 conv trunk and two heads, ``heat`` [N,1,H/2,W/2] and ``box``.

    Outputs are declared with the input's own dims (symbols or placeholders), as exporters write them.
    ``pin_size`` appends a Reshape to the flat size at the declared H, W (what a Flatten->Gemm head
    exported with a constant shape looks like), so the graph only runs at that size.
    """
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.3, (1, 4, 1, 1)).astype(np.float32), "w_heat"),
        numpy_helper.from_array(rng.normal(0, 0.3, (2, 4, 1, 1)).astype(np.float32), "w_box"),
    ]
    nodes = []
    x = "image"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    nodes += [
        helper.make_node("Conv", [x, "w1"], ["c1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w_heat"], ["h"], kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["h"], ["heat"]),
    ]
    n, h, w = (shape[0], shape[1], shape[2]) if layout == "NHWC" else (shape[0], shape[2], shape[3])
    half = [d // 2 if isinstance(d, int) else d for d in (h, w)]
    box_shape: Dims = [n, 2, *half]
    if pin_size:
        assert isinstance(h, int) and isinstance(w, int)
        flat = 2 * half[0] * half[1]
        inits.append(numpy_helper.from_array(np.array([1, flat], np.int64), "flat_shape"))
        nodes += [
            helper.make_node("Conv", ["r1", "w_box"], ["b"], kernel_shape=[1, 1]),
            helper.make_node("Reshape", ["b", "flat_shape"], ["box"], name="pinned_reshape"),
        ]
        box_shape = [1, flat]
    else:
        nodes.append(helper.make_node("Conv", ["r1", "w_box"], ["box"], kernel_shape=[1, 1]))
    graph = helper.make_graph(
        nodes,
        "detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [
            helper.make_tensor_value_info("heat", TensorProto.FLOAT, [n, 1, *half]),
            helper.make_tensor_value_info("box", TensorProto.FLOAT, box_shape),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def spec_for(tmp_path: Path, model: onnx.ModelProto, size: int = 32, layout: str = "NCHW") -> ModelSpec:
    source = tmp_path / "src.onnx"
    onnx.save(model, str(source))
    data = {
        "project": {"name": "a", "version": "1"},
        "models": [
            {
                "name": "m",
                "source": str(source),
                "input": {"size": [size, size], "layout": layout},
                "evaluation": {"images": "eval"},
                "variants": ["fp16"],
            }
        ],
    }
    return parse_config(data, tmp_path / "packager.toml").models[0]


def _outputs(path: Path) -> list[onnx.ValueInfoProto]:
    return list(onnx.load(str(path)).graph.output)


def test_symbolic_height_and_width_come_from_the_configured_size(tmp_path: Path) -> None:
    prepared = prepare_reference(spec_for(tmp_path, detector(["N", 3, "H", "W"])), tmp_path / "fp32.onnx")
    assert prepared.input.shape == [1, 3, 32, 32]


def test_static_batch_placeholder_becomes_one(tmp_path: Path) -> None:
    prepared = prepare_reference(spec_for(tmp_path, detector([10, 3, 32, 32])), tmp_path / "fp32.onnx")
    assert prepared.input.shape == [1, 3, 32, 32]


def test_nhwc_symbolic_dims_follow_the_layout(tmp_path: Path) -> None:
    model = detector(["N", "H", "W", 3], layout="NHWC")
    prepared = prepare_reference(spec_for(tmp_path, model, layout="NHWC"), tmp_path / "fp32.onnx")
    assert prepared.input.shape == [1, 32, 32, 3]


def test_fully_convolutional_static_size_is_overridden_by_the_config(tmp_path: Path) -> None:
    prepared = prepare_reference(spec_for(tmp_path, detector([1, 3, 16, 16])), tmp_path / "fp32.onnx")
    assert prepared.input.shape == [1, 3, 32, 32]
    assert any("16 -> 32" in change for change in prepared.changes)


def test_size_pinned_by_a_reshape_is_a_clear_error(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, detector([1, 3, 16, 16], pin_size=True))
    with pytest.raises(ModelError) as exc:
        prepare_reference(spec, tmp_path / "fp32.onnx")
    message = str(exc.value)
    assert "height, width" in message and "[16, 16]" in message and "[32, 32]" in message
    assert "pinned_reshape" in message
    assert "size = [16, 16]" in message  # the fix: configure the model's own size


@pytest.mark.parametrize(
    "shape", [["N", 3, "H", "W"], [10, 3, 32, 32], [1, 3, 16, 16]], ids=["symbolic", "batch10", "static16"]
)
def test_output_shapes_are_reinferred_at_the_fixed_shape(tmp_path: Path, shape: Dims) -> None:
    prepared = prepare_reference(spec_for(tmp_path, detector(shape)), tmp_path / "fp32.onnx")
    declared = {o.name: io_info(o).shape for o in _outputs(prepared.path)}
    assert declared == {"heat": [1, 1, 16, 16], "box": [1, 2, 16, 16]}
    assert [o.shape for o in prepared.outputs] == [[1, 1, 16, 16], [1, 2, 16, 16]]


def test_calibration_tensors_run_on_the_prepared_model(tmp_path: Path) -> None:
    prepared = prepare_reference(spec_for(tmp_path, detector(["N", 3, "H", "W"])), tmp_path / "fp32.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        cv2.imwrite(str(calib / f"{i}.png"), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    spec = spec_for(tmp_path, detector(["N", 3, "H", "W"]))
    tensors, _ = load_calibration(
        CalibrationSpec(images=calib, min_count=1), spec.input, list(prepared.input.shape)
    )
    session = ort.InferenceSession(str(prepared.path), providers=["CPUExecutionProvider"])
    heat, box = session.run(None, {"image": tensors[:1]})
    assert heat.shape == (1, 1, 16, 16) and box.shape == (1, 2, 16, 16)


def test_equivalence_is_measured_on_every_output(tmp_path: Path) -> None:
    prepared = prepare_reference(spec_for(tmp_path, detector(["N", 3, "H", "W"])), tmp_path / "fp32.onnx")
    assert set(prepared.equivalence) == {"heat", "box"}
    assert min(prepared.equivalence.values()) > 0.99999


def test_equivalence_catches_a_difference_in_a_later_output(tmp_path: Path) -> None:
    source = detector(["N", 3, "H", "W"])
    changed = onnx.ModelProto()
    changed.CopyFrom(source)
    box_weight = next(i for i in changed.graph.initializer if i.name == "w_box")
    box_weight.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(box_weight), "w_box"))
    cosines = _equivalence(source, changed, "image", [1, 3, 32, 32])
    assert cosines["heat"] > 0.99999
    assert cosines["box"] < 0


def test_equivalence_runs_a_static_source_at_the_configured_size(tmp_path: Path) -> None:
    source = detector([1, 3, 16, 16])
    prepared = prepare_reference(spec_for(tmp_path, source), tmp_path / "fp32.onnx")
    cosines = _equivalence(source, onnx.load(str(prepared.path)), "image", [1, 3, 32, 32])
    assert min(cosines.values()) > 0.99999


def test_initializers_no_node_reads_are_removed(tmp_path: Path) -> None:
    model = detector(["N", 3, "H", "W"])
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((), np.int64), "bn.num_batches_tracked"))
    prepared = prepare_reference(spec_for(tmp_path, model), tmp_path / "fp32.onnx")
    names = {t.name for t in onnx.load(str(prepared.path)).graph.initializer}
    assert "bn.num_batches_tracked" not in names and len(names) == len(model.graph.initializer) - 1
    assert "removed 1 initializers no node reads" in prepared.changes
