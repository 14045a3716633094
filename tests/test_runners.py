"""Host runners: an artifact ORT's optimizer cannot load runs at the highest level that works; the
runner is chosen by the artifact's format, and a format this host cannot run says why."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from packager.errors import ConversionError, StepError
from packager.validate.evaluate import EvaluationData, LatencySettings, OutputPlan, evaluate
from packager.validate.formats import NotRunnable, cannot_run_here, runner_for
from packager.validate.runners import OrtRunner


def _layer_norms(blocks: int) -> onnx.ModelProto:
    """Residual blocks of an exported LayerNorm (ReduceMean, Sub, Pow(2), ReduceMean, Add(eps), Sqrt, Div,
    Mul, Add) with unnamed Constant nodes, as paddle2onnx writes them (PP-OCRv4 recognizer)."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x = "x"
    for k in range(blocks):
        for name, value in ((f"two{k}", 2.0), (f"eps{k}", 1e-5)):
            const = numpy_helper.from_array(np.asarray(value, np.float32), f"{name}_value")
            nodes.append(helper.make_node("Constant", [], [name], value=const))
        inits += [
            numpy_helper.from_array(np.full(16, 1.5, np.float32), f"gamma{k}"),
            numpy_helper.from_array(np.full(16, 0.1, np.float32), f"beta{k}"),
        ]
        nodes += [
            helper.make_node("ReduceMean", [x], [f"mu{k}"], name=f"mean{k}", axes=[-1]),
            helper.make_node("Sub", [x, f"mu{k}"], [f"d{k}"], name=f"sub{k}"),
            helper.make_node("Pow", [f"d{k}", f"two{k}"], [f"sq{k}"], name=f"pow{k}"),
            helper.make_node("ReduceMean", [f"sq{k}"], [f"var{k}"], name=f"var{k}", axes=[-1]),
            helper.make_node("Add", [f"var{k}", f"eps{k}"], [f"ve{k}"], name=f"addeps{k}"),
            helper.make_node("Sqrt", [f"ve{k}"], [f"sd{k}"], name=f"sqrt{k}"),
            helper.make_node("Div", [f"d{k}", f"sd{k}"], [f"n{k}"], name=f"div{k}"),
            helper.make_node("Mul", [f"n{k}", f"gamma{k}"], [f"g{k}"], name=f"scale{k}"),
            helper.make_node("Add", [f"g{k}", f"beta{k}"], [f"y{k}"], name=f"shift{k}"),
            helper.make_node("Add", [f"y{k}", x], [f"r{k}"], name=f"residual{k}"),
        ]
        x = f"r{k}"
    graph = helper.make_graph(
        nodes,
        "layer_norms",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 8, 16])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.fixture
def fp16_layer_norms(tmp_path: Path) -> Path:
    """FP16 conversion of two LayerNorm blocks: ORT 1.23's SimplifiedLayerNormFusion fails on it at
    ORT_ENABLE_ALL ("Attempting to get index by a name which does not exist"), EXTENDED loads it."""
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = float16.convert_float_to_float16(_layer_norms(2), keep_io_types=True)
    path = tmp_path / "fp16.onnx"
    onnx.save(converted, str(path))
    return path


def test_a_model_the_full_optimizer_cannot_load_runs_at_the_next_level_and_says_why(
    fp16_layer_norms: Path,
) -> None:
    runner = OrtRunner(fp16_layer_norms, "default", label="fp16 of model rec")
    assert runner.optimization_level == "extended"
    assert runner.optimization_fallback is not None and "all" in runner.optimization_fallback
    x = np.random.default_rng(0).normal(0, 1, (2, 8, 16)).astype(np.float32)
    expected = x
    for _ in range(2):
        mu, var = expected.mean(-1, keepdims=True), expected.var(-1, keepdims=True)
        expected = (expected - mu) / np.sqrt(var + 1e-5) * 1.5 + 0.1 + expected
    assert np.abs(runner.run(x) - expected).max() < 0.05  # FP16 arithmetic, values up to ~5


def test_a_model_that_loads_at_the_full_level_records_no_fallback(tmp_path: Path) -> None:
    path = tmp_path / "fp32.onnx"
    onnx.save(_layer_norms(1), str(path))
    runner = OrtRunner(path, "default")
    assert runner.optimization_level == "all" and runner.optimization_fallback is None


def test_reference_mode_always_runs_unoptimized(fp16_layer_norms: Path) -> None:
    assert OrtRunner(fp16_layer_norms, "reference").optimization_level == "disabled"


def test_a_model_no_level_can_load_names_the_artifact_not_its_path(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"])],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / ".packager-cache" / "steps" / "ab" / "out" / "fp16.onnx"
    path.parent.mkdir(parents=True)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    with pytest.raises(ConversionError) as err:
        OrtRunner(path, "default", label="fp16 of model m")
    message = str(err.value)
    assert "fp16 of model m" in message and "NoSuchOp" in message
    assert ".packager-cache" not in message


def test_an_unknown_output_name_is_an_error_not_the_first_output(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_layer_norms(1), str(path))
    with pytest.raises(StepError, match=r"no output 'embedding' \(outputs: r0\).*output\.name"):
        OrtRunner(path, output="embedding")


def _ort_file(source: Path) -> Path:
    """``source`` converted the way the mobile targets do (DESIGN §5.9): a real .ort file."""
    import subprocess

    out = source.parent / "ort"
    tool = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort"]
    subprocess.run(
        [*tool, str(source), "--output_dir", str(out), "--target_platform", "arm"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out / f"{source.stem}.ort"


def test_runner_for_an_onnx_file_is_onnxruntime_in_both_modes(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_layer_norms(1), str(path))
    for mode in ("default", "reference"):
        runner = runner_for(path, mode, threads=1, label="fp32 of model m")
        assert isinstance(runner, OrtRunner) and runner.modes == ("default", "reference")
        assert runner.label == "fp32 of model m"


def test_an_ort_file_runs_in_onnxruntime_like_its_source_in_default_mode_only(tmp_path: Path) -> None:
    source = tmp_path / "m.onnx"
    onnx.save(_layer_norms(2), str(source))
    path = _ort_file(source)
    x = np.random.default_rng(1).normal(0, 1, (3, 8, 16)).astype(np.float32)
    runner = runner_for(path, "default", threads=1, label="ort of model m")
    assert isinstance(runner, OrtRunner) and runner.modes == ("default",)
    found, expected = runner.run_all(x), OrtRunner(source).run_all(x)
    assert list(found) == list(expected)
    np.testing.assert_allclose(found["r1"], expected["r1"], rtol=1e-5, atol=1e-5)
    with pytest.raises(StepError, match=r"\.ort artifacts have no 'reference' mode"):
        runner_for(path, "reference", threads=1, label="ort of model m")


def test_evaluate_skips_the_modes_an_artifacts_format_does_not_have(tmp_path: Path) -> None:
    source = tmp_path / "m.onnx"
    onnx.save(_layer_norms(1), str(source))
    x = np.random.default_rng(2).normal(0, 1, (3, 8, 16)).astype(np.float32)
    data = EvaluationData(x, None, None, OrtRunner(source).run_all(x), None)
    results, outputs = evaluate(
        _ort_file(source),
        ("default", "reference"),
        [OutputPlan("r0")],
        data,
        LatencySettings(runs=2, warmup=1, threads=1),
        lambda *_: None,
    )
    assert list(results) == ["default"] and outputs["r0"].shape == (3, 8, 16)
    assert results["default"].output("r0").cosine.min > 0.9999


def test_an_mlpackage_is_not_validated_on_linux_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "fp16.mlpackage"
    path.mkdir()
    reason = "Core ML prediction needs macOS (coremltools cannot run .mlpackage on Linux)"
    assert cannot_run_here(path, platform="linux") == reason
    assert cannot_run_here(path, platform="darwin") is None  # CoreMLRunner predicts there
    if sys.platform == "linux":
        with pytest.raises(NotRunnable) as err:
            runner_for(path, "default", threads=1, label="coreml of model m")
        assert err.value.not_validated_reason == reason and "coreml of model m" in str(err.value)


def test_an_unknown_format_is_not_runnable_and_names_the_runnable_ones(tmp_path: Path) -> None:
    reason = cannot_run_here(tmp_path / "model.pt")
    assert reason is not None and "'.pt'" in reason and ".onnx, .ort, .tflite" in reason
    with pytest.raises(NotRunnable):
        evaluate(
            tmp_path / "model.pt",
            ("default",),
            [OutputPlan("y")],
            EvaluationData(np.zeros((1, 4), np.float32), None, None, None, None),
            LatencySettings(runs=1, warmup=0, threads=1),
            lambda *_: None,
        )


def test_a_saved_model_folder_is_run_by_tensorflow_with_outputs_named_by_onnx_index(tmp_path: Path) -> None:
    from packager.validate.saved_model_runner import onnx_output_names

    folder = tmp_path / "saved_model"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"")
    assert cannot_run_here(folder) is None
    names = ["cls_8", "cls_16", "cls_32", "obj_8", "obj_16", "obj_32", "b0", "b1", "b2", "b3", "k0", "k1"]
    signature = [f"output_{i}" for i in (10, 2, 11, 0, 1, 3, 4, 5, 6, 7, 8, 9)]
    mapped = onnx_output_names(signature, names, "m")
    assert mapped["output_10"] == "k0" and mapped["output_2"] == "cls_32" and len(set(mapped.values())) == 12
