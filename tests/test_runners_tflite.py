"""TFLite runner: real .tflite files made here with TensorFlow, fed and read on the ONNX model's terms.

The models mimic what onnx2tf writes: an NHWC input, signature outputs named after the ONNX outputs,
and two outputs of the same shape whose tensor order is not their name order (DESIGN §5.25).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from packager.errors import StepError
from packager.validate.evaluate import EvaluationData, LatencySettings, OutputPlan, evaluate
from packager.validate.formats import runner_for
from packager.validate.runners import TFLiteRunner, match_outputs

NHWC = (1, 6, 5, 3)
"""H, W and C all differ, so a wrong transpose cannot pass by accident."""
ONNX_ORDER = ["alpha", "pooled", "zeta"]
NCHW_SHAPES = {"alpha": [1, 4, 6, 5], "pooled": [1, 4], "zeta": [1, 4, 6, 5]}


@dataclass(frozen=True)
class Models:
    float32: Path
    int8: Path
    nhwc: np.ndarray
    """Inputs [N, H, W, C] in [0, 2]."""
    expected: dict[str, np.ndarray]
    """The TF function's outputs on ``nhwc``, NHWC."""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """A conv net as a tf.function returning ``zeta`` = 2·relu(conv), ``alpha`` = relu(conv)+1 (same
    shape) and ``pooled``; converted to float32 and to full INT8 (int8 input and outputs)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    weights = tf.constant(rng.normal(0, 0.5, (3, 3, 3, 4)).astype(np.float32))

    class Net(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(NHWC, tf.float32, name="data")])
        def serve(self, data: tf.Tensor) -> dict[str, tf.Tensor]:
            y = tf.nn.relu(tf.nn.conv2d(data, weights, 1, "SAME"))
            return {"zeta": y * 2.0, "alpha": y + 1.0, "pooled": tf.reduce_mean(y, axis=[1, 2])}

    net = Net()
    function = net.serve.get_concrete_function()
    folder = tmp_path_factory.mktemp("tflite")
    float32 = folder / "float32.tflite"
    float32.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([function], net).convert())

    def representative():
        for _ in range(32):
            yield [rng.uniform(0, 2, NHWC).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], net)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    int8 = folder / "int8.tflite"
    int8.write_bytes(converter.convert())

    nhwc = rng.uniform(0, 2, (4, *NHWC[1:])).astype(np.float32)
    expected: dict[str, list[np.ndarray]] = {name: [] for name in ONNX_ORDER}
    for sample in nhwc:
        for name, value in net.serve(tf.constant(sample[None])).items():
            expected[name].append(value.numpy()[0])
    return Models(float32, int8, nhwc, {n: np.stack(v) for n, v in expected.items()})


def _nchw(values: np.ndarray) -> np.ndarray:
    return values.transpose(0, 3, 1, 2) if values.ndim == 4 else values


def test_the_float_model_gives_the_tf_functions_outputs_under_their_own_names(models: Models) -> None:
    runner = TFLiteRunner(models.float32, reference_names=ONNX_ORDER)
    found = runner.run_all(models.nhwc)
    assert list(found) == ONNX_ORDER
    for name in ONNX_ORDER:
        np.testing.assert_allclose(found[name], models.expected[name], rtol=1e-5, atol=1e-5)


def test_two_outputs_of_the_same_shape_are_matched_by_signature_name_not_position(models: Models) -> None:
    runner = TFLiteRunner(models.float32, reference_names=ONNX_ORDER)
    by_index = {d["index"]: name for name, d in runner.outputs.items()}
    tensor_order = [by_index[d["index"]] for d in runner.interpreter.get_output_details()]
    assert tensor_order[:2] == ["zeta", "alpha"]  # the precondition: position would swap them
    for order in (ONNX_ORDER, ONNX_ORDER[::-1]):
        found = TFLiteRunner(models.float32, reference_names=order).run_all(models.nhwc[:1])
        np.testing.assert_allclose(found["alpha"], models.expected["alpha"][:1], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(found["zeta"], models.expected["zeta"][:1], rtol=1e-5, atol=1e-5)


def test_an_nchw_batch_feeds_an_nhwc_input_and_outputs_come_back_nchw(models: Models) -> None:
    direct = TFLiteRunner(models.float32, reference_names=ONNX_ORDER).run_all(models.nhwc)
    runner = TFLiteRunner(models.float32, reference_names=ONNX_ORDER, reference_shapes=NCHW_SHAPES)
    found = runner.run_all(_nchw(models.nhwc))
    for name in ONNX_ORDER:
        assert list(found[name].shape[1:]) == NCHW_SHAPES[name][1:]
        np.testing.assert_array_equal(found[name], _nchw(direct[name]))


def test_the_int8_model_is_fed_and_read_with_each_tensors_own_scale_and_zero_point(models: Models) -> None:
    runner = TFLiteRunner(models.int8, reference_names=ONNX_ORDER, reference_shapes=NCHW_SHAPES)
    found = runner.run_all(_nchw(models.nhwc))

    details = runner.input
    (scale,), (zero,) = (
        details["quantization_parameters"]["scales"],
        details["quantization_parameters"]["zero_points"],
    )
    assert details["dtype"] == np.int8 and zero != 0 and scale != 1  # else the check below proves little
    signature = runner.interpreter.get_signature_runner()
    for i, sample in enumerate(models.nhwc):
        quantized = np.clip(np.round(sample[None] / scale) + zero, -128, 127).astype(np.int8)
        for name, value in signature(data=quantized).items():
            (out_scale,), (out_zero,) = (
                runner.outputs[name]["quantization_parameters"][k] for k in ("scales", "zero_points")
            )
            by_hand = (value.astype(np.float32) - out_zero) * out_scale
            np.testing.assert_array_equal(found[name][i], _nchw(by_hand)[0])

    for name in ONNX_ORDER:  # and INT8 stays near the float function
        expected = _nchw(models.expected[name])
        step = runner.outputs[name]["quantization_parameters"]["scales"][0]
        assert np.abs(found[name] - expected).max() < 0.05 * np.abs(expected).max() + 2 * step


def test_signature_names_matching_no_onnx_output_are_an_error_naming_both_lists(models: Models) -> None:
    with pytest.raises(StepError, match=r"\(alpha, pooled, zeta\).*\(fc1, fc2, fc3\).*output_signaturedefs"):
        TFLiteRunner(models.float32, label="fp32 tflite of model m", reference_names=["fc1", "fc2", "fc3"])


def test_an_output_that_fits_neither_layout_of_the_onnx_shape_is_named(models: Models) -> None:
    runner = TFLiteRunner(models.float32, reference_names=ONNX_ORDER, reference_shapes={"pooled": [1, 5]})
    with pytest.raises(StepError, match=r"output 'pooled'.*\[1, 4\].*\[1, 5\]"):
        runner.run_all(models.nhwc[:1])


def test_runner_for_a_tflite_gives_litert_in_its_one_mode(models: Models) -> None:
    runner = runner_for(models.float32, "default", threads=2, label="t", reference_names=ONNX_ORDER)
    assert isinstance(runner, TFLiteRunner) and runner.modes == ("default",)
    assert runner.optimization_level is None and runner.optimization_fallback is None
    times = runner.time(_nchw(models.nhwc)[0], runs=3, warmup=1)
    assert len(times) == 3 and all(t > 0 for t in times)
    with pytest.raises(StepError, match="no 'reference' mode"):
        runner_for(models.float32, "reference", threads=1, label="t")


def test_evaluate_measures_a_tflite_against_the_onnx_reference_in_default_mode_only(models: Models) -> None:
    reference = {name: _nchw(models.expected[name]) for name in ONNX_ORDER}
    data = EvaluationData(_nchw(models.nhwc), None, None, reference, None)
    results, outputs = evaluate(
        models.float32,
        ("default", "reference"),
        [OutputPlan(name) for name in ONNX_ORDER],
        data,
        LatencySettings(runs=2, warmup=1, threads=1),
        lambda *_: None,
        label="fp32 tflite of model m",
    )
    assert list(results) == ["default"]
    assert results["default"].optimization_level == "n/a"
    assert all(results["default"].output(name).cosine.min > 0.99999 for name in ONNX_ORDER)
    assert outputs["alpha"].shape == (4, 4, 6, 5)


def test_onnx2tf_spellings_of_onnx_output_names_match() -> None:
    found = match_outputs(["out__0", "wa/head/conv"], ["/head/conv", "out:0"], "m")
    assert found == {"out__0": "out:0", "wa/head/conv": "/head/conv"}


def test_a_single_output_needs_no_name() -> None:
    assert match_outputs(["Identity"], ["fc1"], "m") == {"Identity": "fc1"}
