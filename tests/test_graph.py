"""Loading and preparing models: clear refusals, and a prepared reference that computes the same thing."""

from __future__ import annotations

import json
from pathlib import Path

import model_factory
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_prepare import detector

from packager.cli import main
from packager.config import InputSpec, parse_config
from packager.errors import ModelError
from packager.graph import image_input, inspect_model, load_model
from packager.prepare import prepare_reference


def _spec(tmp_path: Path, source: Path, size: int = 32):
    data = {
        "project": {"name": "a", "version": "1"},
        "models": [
            {
                "name": "m",
                "source": str(source),
                "input": {"size": [size, size]},
                "evaluation": {"images": "eval"},
                "variants": ["fp16"],
            }
        ],
    }
    return parse_config(data, tmp_path / "packager.toml").models[0]


def test_truncated_model_is_refused_with_a_fix(tmp_path: Path) -> None:
    good = model_factory.save(model_factory.mobilefacenet_like(), tmp_path / "good.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelError, match=r"bad\.onnx: .*(truncated|corrupt|not a valid)"):
        load_model(bad)


def test_text_file_named_onnx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    with pytest.raises(ModelError, match="text file"):
        load_model(path)


def test_missing_external_data_is_named(tmp_path: Path) -> None:
    model = model_factory.mobilefacenet_like()
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="ext.data", size_threshold=0)
    (tmp_path / "ext.data").unlink()
    with pytest.raises(ModelError, match="external weight data is missing"):
        load_model(path)


def test_missing_file_points_at_the_config_field(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"source in packager\.toml"):
        load_model(tmp_path / "absent.onnx")


def test_two_image_inputs_with_one_preprocessing_block_is_refused(tmp_path: Path) -> None:
    model = model_factory.two_image_inputs()
    with pytest.raises(ModelError, match=r"2 inputs .* one preprocessing block"):
        image_input(model, InputSpec(size=[8, 8]), tmp_path / "two.onnx")


def test_integer_input_is_refused_for_images(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="int64"):
        image_input(model_factory.int_input(), InputSpec(size=[16, 16]), tmp_path / "ints.onnx")


def test_channel_mismatch_names_both_shapes(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"\[1, 3, 32, 32\].*\[1, 1, 32, 32\].*channels"):
        image_input(
            model_factory.mobilefacenet_like(size=32),
            InputSpec(size=[32, 32], channels="GRAY", mean=[0], std=[1]),
            tmp_path / "m.onnx",
        )


def test_static_size_differing_from_the_config_is_left_to_prepare(tmp_path: Path) -> None:
    """A static placeholder size is not refused up front: prepare tries the configured size first."""
    value = image_input(
        model_factory.mobilefacenet_like(size=32), InputSpec(size=[112, 112]), tmp_path / "m.onnx"
    )
    assert value.name == "data"


def test_inspect_reports_ops_and_initializer_inputs(tmp_path: Path) -> None:
    model = model_factory.with_initializers_as_inputs(model_factory.mobilefacenet_like(batch="N"))
    report = inspect_model(model, tmp_path / "m.onnx")
    assert report.op_histogram["Conv"] == 5
    assert report.initializers_as_inputs == len(model.graph.initializer)
    assert report.inputs[0].shape == ["N", 3, 32, 32]
    assert "data[0]=N" in report.dynamic_dims


def test_prepare_cleans_fixes_batch_upgrades_opset_and_keeps_numerics(tmp_path: Path) -> None:
    source = model_factory.with_initializers_as_inputs(model_factory.mobilefacenet_like(batch="N", opset=11))
    path = model_factory.save(source, tmp_path / "src.onnx")
    prepared = prepare_reference(_spec(tmp_path, path), tmp_path / "out" / "fp32.onnx")
    model = onnx.load(str(prepared.path))
    assert [i.name for i in model.graph.input] == ["data"]
    assert prepared.input.shape == [1, 3, 32, 32]
    assert (prepared.opset_source, prepared.opset) == (11, 13)
    sample = np.random.default_rng(0).uniform(0, 255, (1, 3, 32, 32)).astype(np.float32)
    a = ort.InferenceSession(str(path)).run(None, {"data": sample})[0]
    b = ort.InferenceSession(str(prepared.path)).run(None, {"data": sample})[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_model_without_inputs_is_refused(tmp_path: Path) -> None:
    const = onnx.helper.make_node(
        "Constant", [], ["y"], value=onnx.numpy_helper.from_array(np.zeros((1, 4), np.float32))
    )
    graph = onnx.helper.make_graph(
        [const], "noin", [], [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])]
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    with pytest.raises(ModelError, match="no inputs"):
        image_input(model, InputSpec(size=[8, 8]), tmp_path / "noin.onnx")


def _fixes(report) -> list[tuple[str, int, str, int | str, int | str]]:
    return [(f.input, f.axis, f.dim, f.from_, f.to) for f in report.input_fixes]


def test_inspect_without_config_names_the_dims_it_will_fix(tmp_path: Path) -> None:
    report = inspect_model(detector(["N", 3, "H", "W"]), tmp_path / "m.onnx")
    assert _fixes(report) == [
        ("image", 0, "batch", "N", 1),
        ("image", 2, "height", "H", "[models].input.size[0]"),
        ("image", 3, "width", "W", "[models].input.size[1]"),
    ]


def test_inspect_with_config_gives_the_exact_values(tmp_path: Path) -> None:
    model = detector([10, 3, 16, 16])
    report = inspect_model(model, tmp_path / "m.onnx", InputSpec(size=[32, 32]))
    assert _fixes(report) == [
        ("image", 0, "batch", 10, 1),
        ("image", 2, "height", 16, 32),
        ("image", 3, "width", 16, 32),
    ]
    assert all(f.why for f in report.input_fixes)


def _config(tmp_path: Path, source: Path, size: int) -> Path:
    path = tmp_path / "packager.toml"
    path.write_text(
        f'[project]\nname = "a"\nversion = "1"\n\n[[models]]\nname = "det"\nsource = "{source.name}"\n'
        f'input = {{ size = [{size}, {size}] }}\nevaluation = {{ images = "eval" }}\nvariants = ["fp16"]\n'
    )
    return path


def test_check_json_lists_input_fixes_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = model_factory.save(detector([10, 3, 16, 16]), tmp_path / "det.onnx")
    config = _config(tmp_path, source, 32)
    assert main(["check", str(source), "--json", "--config", str(config)]) == 0
    fixes = json.loads(capsys.readouterr().out)["input_fixes"]
    assert [(f["input"], f["axis"], f["from"], f["to"]) for f in fixes] == [
        ("image", 0, 10, 1),
        ("image", 2, 16, 32),
        ("image", 3, 16, 32),
    ]
    assert all(f["why"] for f in fixes)


def test_check_with_config_refuses_a_size_the_graph_cannot_run_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = model_factory.save(detector([1, 3, 16, 16], pin_size=True), tmp_path / "det.onnx")
    assert main(["check", str(source), "--config", str(_config(tmp_path, source, 32))]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "cannot run at [1, 3, 32, 32]" in err and "size = [16, 16]" in err


def test_check_without_config_says_batch_to_one_and_size_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = model_factory.save(detector(["N", 3, "H", "W"]), tmp_path / "det.onnx")
    assert main(["check", str(source)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "image[0] batch N → 1" in out
    assert "image[2] height H → [models].input.size[0]" in out


def test_check_with_config_prints_the_exact_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = model_factory.save(detector(["N", 3, "H", "W"]), tmp_path / "det.onnx")
    assert main(["check", str(source), "--config", str(_config(tmp_path, source, 48))]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "image[2] height H → 48" in out and "image[3] width W → 48" in out


def constant_weights() -> onnx.ModelProto:
    """A paddle2onnx-style net: the Conv weight (4x3x3x3) and two small operands are ``Constant`` nodes.

    Constant nodes hold 108 (``value``) + 1 (``value_float``) + 2 (``value_ints``) = 111 elements; the
    Conv bias (4) is the only initializer.
    """
    h = onnx.helper
    weight = onnx.numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32))
    nodes = [
        h.make_node("Constant", [], ["w"], value=weight),
        h.make_node("Constant", [], ["scale"], value_float=2.0),
        h.make_node("Constant", [], ["shape"], value_ints=[1, -1]),
        h.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        h.make_node("Mul", ["c", "scale"], ["m"]),
        h.make_node("Reshape", ["m", "shape"], ["y"]),
    ]
    graph = h.make_graph(
        nodes,
        "constant_weights",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 256])],
        [onnx.numpy_helper.from_array(np.zeros(4, np.float32), "b")],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def test_inspect_counts_parameters_held_in_constant_nodes(tmp_path: Path) -> None:
    report = inspect_model(constant_weights(), tmp_path / "m.onnx")
    counts = (report.parameters, report.parameters_in_initializers, report.parameters_in_constant_nodes)
    assert counts == (115, 4, 111)


def test_inspect_counts_parameters_inside_if_branches(tmp_path: Path) -> None:
    h = onnx.helper
    out = [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])]
    value = onnx.numpy_helper.from_array(np.ones((2, 3), np.float32))
    then_branch = h.make_graph([h.make_node("Constant", [], ["y"], value=value)], "then", [], out)
    table = onnx.numpy_helper.from_array(np.zeros((2, 3), np.float32), "table")
    else_branch = h.make_graph([h.make_node("Identity", ["table"], ["y"])], "else", [], out, [table])
    node = h.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch)
    cond = h.make_tensor_value_info("cond", onnx.TensorProto.BOOL, [])
    model = h.make_model(h.make_graph([node], "if", [cond], out), opset_imports=[h.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    report = inspect_model(model, tmp_path / "m.onnx")
    counts = (report.parameters, report.parameters_in_initializers, report.parameters_in_constant_nodes)
    assert counts == (12, 6, 6)


def test_inspect_notes_say_what_build_fixes(tmp_path: Path) -> None:
    model = model_factory.with_initializers_as_inputs(model_factory.mobilefacenet_like(batch="N", opset=11))
    report = inspect_model(model, tmp_path / "m.onnx")
    assert [n.code for n in report.notes] == ["initializers-as-inputs", "dynamic-dims", "opset-below-13"]
    assert report.notes[0].message.startswith(f"{len(model.graph.initializer)} initializers")
    assert "data[0]=N" in report.notes[1].message
    assert all(n.fix for n in report.notes)
    assert [n.code for n in inspect_model(constant_weights(), tmp_path / "m.onnx").notes] == ["ir-version"]


def test_check_notes_what_shape_inference_rejects_and_a_too_new_ir_version() -> None:
    from onnx import TensorProto, helper, numpy_helper

    low = numpy_helper.from_array(np.asarray(0.0, np.float64), "low")  # Clip's min must match x's type
    graph = helper.make_graph(
        [helper.make_node("Clip", ["x", "low"], ["y"], name="clip")],
        "bad_clip",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
        [low],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 12
    notes = {n.code: n for n in inspect_model(model, Path("m.onnx")).notes}
    assert "inconsistent type" in notes["shape-inference"].message
    assert notes["ir-version"].message == "IR version 12 is newer than onnxruntime loads (11)"
