"""targets/android/ort_format.py and ep_config.py on tiny real models: ORT conversion, host runs of the
.ort, EP coverage from onnxruntime's own checker, the runtime-version rule, and the app's EP config."""

from __future__ import annotations

import json
from pathlib import Path

import model_factory
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from packager.errors import ConfigError, ConversionError, ModelError
from packager.validate.formats import runner_for
from packager.validate.runners import OrtRunner
from targets.ort_mobile.ep_config import CoreMLOptions, EpConfig, ep_config, ep_coverage, recommended_style
from targets.ort_mobile.ort_format import (
    ANDROID_RUNTIME,
    IOS_COCOAPODS,
    IOS_SWIFT_PACKAGE,
    check_runtime_version,
    convert_to_ort,
)


def _qdq(fp32: Path, out: Path, activations: str) -> Path:
    """Static QDQ of ``fp32`` (per-channel weights int8; activations ``uint8`` (U8S8) or ``int8``)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.batches = iter([{"data": rng.uniform(0, 255, (1, 3, 32, 32)).astype(np.float32)}] * 4)

        def get_next(self):
            return next(self.batches, None)

    act = QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8
    quantize_static(
        str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=act,
        weight_type=QuantType.QInt8, per_channel=True,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A MobileNetV2-shaped net (Conv/Relu/Clip/Add/GlobalAveragePool/Flatten/Gemm) in FP32 and QDQ."""
    root = tmp_path_factory.mktemp("models")
    fp32 = model_factory.save(model_factory.mobilenet_like(size=32, seed=0), root / "fp32" / "net.onnx")
    (root / "u8s8").mkdir()
    (root / "s8s8").mkdir()
    return {
        "fp32": fp32,
        "u8s8": _qdq(fp32, root / "u8s8" / "net.onnx", "uint8"),
        "s8s8": _qdq(fp32, root / "s8s8" / "net.onnx", "int8"),
    }


def _ops(conversion) -> set[str]:
    return {f"{r.domain}:{op}" for r in conversion.required_ops for op in r.ops}


# --- conversion -----------------------------------------------------------------------------------


def test_fixed_conversion_writes_ort_and_required_operators(models: dict[str, Path], tmp_path: Path) -> None:
    c = convert_to_ort(models["fp32"], tmp_path, "Fixed")
    assert c.ort_path == tmp_path / "net.ort" and c.ort_path.stat().st_size == c.size_bytes
    assert c.config_path == tmp_path / "net.required_operators.config"
    assert (c.converter_version, c.ort_format_version, c.target_platform) == (ort.__version__, "6", "arm")
    # Fixed bakes the CPU EP's fusions in: Conv+Relu/Clip -> com.microsoft FusedConv.
    assert "com.microsoft:FusedConv" in _ops(c) and "ai.onnx:Relu" not in _ops(c)
    text = c.config_path.read_text()
    assert "# - net.ort" in text and str(tmp_path) not in text  # no build-machine paths
    assert {p.name for p in tmp_path.iterdir()} == {c.config_path.name, c.ort_path.name}


def test_runtime_style_keeps_onnx_ops_and_lists_both_op_sets(models: dict[str, Path], tmp_path: Path) -> None:
    c = convert_to_ort(models["fp32"], tmp_path, "Runtime")
    assert c.ort_path.name == "net.with_runtime_opt.ort"
    assert c.config_path.name == "net.required_operators.with_runtime_opt.config"
    # the file holds Conv+Relu; the config also lists what the saved optimizations turn them into
    assert {"ai.onnx:Relu", "ai.onnx:Clip", "com.microsoft:FusedConv"} <= _ops(c)


def test_qdq_fixed_for_arm_fuses_into_integer_ops(models: dict[str, Path], tmp_path: Path) -> None:
    c = convert_to_ort(models["u8s8"], tmp_path, "Fixed")
    assert {"com.microsoft:QLinearConv", "com.microsoft:QGemm"} <= _ops(c)


@pytest.mark.parametrize("style", ["Fixed", "Runtime"])
@pytest.mark.parametrize("variant", ["fp32", "u8s8"])
def test_ort_runs_on_host_and_matches_onnx(
    models: dict[str, Path], tmp_path: Path, style: str, variant: str
) -> None:
    c = convert_to_ort(models[variant], tmp_path, style)
    batch = np.random.default_rng(1).uniform(0, 255, (3, 3, 32, 32)).astype(np.float32)
    runner = runner_for(c.ort_path, "default", label="net.ort")
    assert runner.modes == ("default",) and runner.optimization_level == "all"
    got = runner.run_all(batch)["embedding"]
    want = OrtRunner(models[variant], "default").run_all(batch)["embedding"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_graph_digest_is_stable_across_conversions(models: dict[str, Path], tmp_path: Path) -> None:
    first = convert_to_ort(models["u8s8"], tmp_path / "a", "Runtime")
    second = convert_to_ort(models["u8s8"], tmp_path / "b", "Runtime")
    assert first.graph_sha256 == second.graph_sha256
    assert first.config_path.read_text() == second.config_path.read_text()


def _conv_integer_model(path: Path) -> Path:
    """Valid ONNX the CPU EP has no kernel for (DESIGN §5.6: ConvInteger with int8 weights)."""
    graph = helper.make_graph(
        [helper.make_node("ConvInteger", ["x", "w"], ["y"], name="conv_int")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1, 2, 2])],
        [numpy_helper.from_array(np.ones((1, 1, 3, 3), np.int8), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model_factory.save(model, path)


def test_model_onnxruntime_cannot_load_raises_conversion_error_naming_node(tmp_path: Path) -> None:
    bad = _conv_integer_model(tmp_path / "src" / "bad.onnx")
    with pytest.raises(ConversionError) as caught:
        convert_to_ort(bad, tmp_path / "out")
    message = str(caught.value)
    assert caught.value.node == "conv_int" and "ConvInteger" in message and "\n" not in message
    assert str(tmp_path) not in message
    assert list((tmp_path / "out").iterdir()) == []  # no scratch left behind


def test_not_an_onnx_file_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not an \.onnx file"):
        convert_to_ort(tmp_path / "missing.onnx", tmp_path / "out")


# --- runtime version rule -------------------------------------------------------------------------


def test_runtime_older_than_converter_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        check_runtime_version("com.microsoft.onnxruntime:onnxruntime-android:1.22.1", converter="1.23.0")
    assert "1.22.1 is older than the converter (onnxruntime 1.23.0)" in str(caught.value)
    with pytest.raises(ConfigError, match="older"):
        check_runtime_version("1.23.0-rc1", converter="1.23.0")  # a pre-release sorts before its release
    with pytest.raises(ConfigError, match="not a version"):
        check_runtime_version("latest", converter="1.23.0")


@pytest.mark.parametrize(
    "runtime", ["1.23.0", "1.23.2", "com.microsoft.onnxruntime:onnxruntime-android:1.24.2"]
)
def test_runtime_same_or_newer_than_converter_is_accepted(runtime: str) -> None:
    check_runtime_version(runtime, converter="1.23.0")


def test_pinned_runtimes_can_load_what_this_converter_writes() -> None:
    for pin in (ANDROID_RUNTIME, IOS_COCOAPODS, IOS_SWIFT_PACKAGE):
        check_runtime_version(pin.version)
    # The Swift package has no 1.23 tag, and its untagged 1.23.0 commit lacks the CoreML EP's V2 options:
    # the pin is the newer release, which loads the older converter's files.
    assert IOS_SWIFT_PACKAGE.reference == IOS_SWIFT_PACKAGE.version == "1.24.2"


# --- EP coverage ----------------------------------------------------------------------------------


def _hardsigmoid_chain(path: Path) -> Path:
    """Conv-Relu-Conv-HardSigmoid-Conv-Relu at fixed shapes: NNAPI has no HardSigmoid."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "data"
    for i, op in enumerate(["Conv", "Relu", "Conv", "HardSigmoid", "Conv", "Relu"]):
        out = f"t{i}" if i < 5 else "out"
        if op == "Conv":
            inits.append(
                numpy_helper.from_array(rng.normal(0, 0.3, (4, 4, 3, 3)).astype(np.float32), f"w{i}")
            )
            nodes.append(helper.make_node(op, [x, f"w{i}"], [out], name=f"n{i}", pads=[1, 1, 1, 1]))
        else:
            nodes.append(helper.make_node(op, [x], [out], name=f"n{i}"))
        x = out
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model_factory.save(model, path)


def test_coverage_counts_an_op_nnapi_lacks(tmp_path: Path) -> None:
    cov = {c.ep: c for c in ep_coverage(_hardsigmoid_chain(tmp_path / "chain.onnx"))}
    nnapi = cov["NNAPI"].as_is
    assert (nnapi.supported_nodes, nnapi.nodes, nnapi.partitions) == (5, 6, 2)
    assert nnapi.unsupported_ops == ("ai.onnx:HardSigmoid",) and nnapi.unsupported_by_op == 1
    assert nnapi.verdict == "MAYBE" and nnapi.partition_sizes == (3, 2)
    assert cov["NNAPI"].if_fixed_shapes is None and cov["NNAPI"].source.startswith("onnxruntime ")
    assert any(c.startswith("ai.onnx:Conv:") for c in cov["NNAPI"].caveats)
    # XNNPACK: Conv takes the Relu after it; HardSigmoid is no XNNPACK EP op either
    xnn = cov["XNNPACK"].as_is
    assert (xnn.supported_nodes, xnn.partitions) == (5, 2) and "ai.onnx:HardSigmoid" in xnn.unsupported_ops


def test_coverage_fp32_vs_qdq(models: dict[str, Path]) -> None:
    fp32 = {c.ep: c.as_is for c in ep_coverage(models["fp32"])}
    u8s8 = {c.ep: c.as_is for c in ep_coverage(models["u8s8"])}
    s8s8 = {c.ep: c.as_is for c in ep_coverage(models["s8s8"])}
    assert fp32["NNAPI"].share == 1.0 and fp32["NNAPI"].partitions == 1
    # DESIGN §5.8: NNAPI takes the QDQ model whole, CoreML only single nodes between Q/DQ pairs
    assert u8s8["NNAPI"].share == 1.0 and u8s8["NNAPI"].partitions == 1
    for ep in ("CoreML NeuralNetwork", "CoreML MLProgram"):
        assert set(u8s8[ep].partition_sizes) == {1} and u8s8[ep].verdict == "NO"
        assert "ai.onnx:DequantizeLinear" in u8s8[ep].unsupported_ops
    # XNNPACK EP refuses uint8 activations with int8 weights, takes int8/int8 QDQ Conv groups
    assert fp32["XNNPACK"].supported_nodes > 0
    assert u8s8["XNNPACK"].supported_nodes == 0
    assert s8s8["XNNPACK"].supported_nodes >= 9 * 4  # 9 Conv groups: DQ(x), DQ(w), DQ(b), Conv, Q


def test_coverage_dynamic_batch_turns_nnapi_off(tmp_path: Path) -> None:
    model = model_factory.save(model_factory.mobilefacenet_like(size=32, batch="N"), tmp_path / "m.onnx")
    cov = {c.ep: c for c in ep_coverage(model)}
    assert cov["NNAPI"].dynamic_inputs == ("data",) and cov["NNAPI"].as_is.supported_nodes == 0
    fixed = cov["NNAPI"].if_fixed_shapes
    assert fixed is not None and fixed.verdict == "YES" and fixed.share == 1.0
    assert "ai.onnx:PRelu" in cov["XNNPACK"].as_is.unsupported_ops  # DESIGN §5.21
    assert cov["XNNPACK"].if_fixed_shapes is None and cov["XNNPACK"].note


# --- EP config ------------------------------------------------------------------------------------


def _plan(eps: list[str], **kwargs) -> dict:
    config = ep_config(eps, threads=4, **kwargs)
    data = json.loads(config.model_dump_json())
    assert EpConfig.model_validate(data) == config  # what the app reads round-trips
    return data["plans"][0]


def test_xnnpack_plan_gives_xnnpack_the_threads() -> None:
    plan = _plan(["xnnpack", "cpu"])
    assert plan["intra_op_num_threads"] == 1 and plan["graph_optimization_level"] == "all"
    assert plan["config_entries"] == {
        "session.load_model_format": "ORT",
        "session.intra_op.allow_spinning": "0",
    }
    assert plan["providers"] == [{"name": "XNNPACK", "options": {"intra_op_num_threads": "4"}, "flags": []}]


def test_nnapi_plan_uses_java_flag_names() -> None:
    plan = _plan(["nnapi"], nnapi_flags=["USE_FP16", "CPU_DISABLED"])
    assert plan["intra_op_num_threads"] == 4
    assert plan["providers"] == [{"name": "NNAPI", "options": {}, "flags": ["USE_FP16", "CPU_DISABLED"]}]


def test_coreml_plan_uses_ort_option_keys() -> None:
    plan = _plan(["coreml"], coreml=CoreMLOptions(model_cache_directory="/cache"))
    assert plan["providers"][0]["options"] == {
        "ModelFormat": "MLProgram",
        "MLComputeUnits": "ALL",
        "RequireStaticInputShapes": "1",
        "EnableOnSubgraphs": "0",
        "SpecializationStrategy": "Default",
        "ModelCacheDirectory": "/cache",
    }


def test_cpu_plan_and_order() -> None:
    config = ep_config(["nnapi", "xnnpack", "cpu"], threads=2)
    assert [p.ep for p in config.plans] == ["nnapi", "xnnpack", "cpu"]
    cpu = config.plans[-1]
    assert (cpu.intra_op_num_threads, cpu.providers) == (2, [])


def test_ep_config_collects_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        ep_config(["nnapi", "nnapi"], threads=0, nnapi_flags=["CPU_DISABLED", "CPU_ONLY"])
    assert len(caught.value.problems) == 3


def test_recommended_style() -> None:
    assert recommended_style(["cpu"]) == "Fixed"
    assert recommended_style(["xnnpack", "cpu"]) == recommended_style(["nnapi"]) == "Runtime"
