"""targets.ios.coreml and packager.validate.coreml_runner on tiny real models: onnx2tf, then coremltools.

Everything here but prediction runs on Linux: packages are checked from their spec and weight file
(structure), and the one numbers test (Core ML prediction against the SavedModel) runs on macOS only.
onnx2tf runs once per model for the session (a few seconds each); coremltools takes about a second.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import model_factory
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from packager.errors import ConversionError
from packager.validate.coreml_runner import MACOS_ONLY, CoreMLRunner, feature_names
from targets.android.tflite import FloatConversion, convert_float
from targets.ios.coreml import CoreMLCompression, CoreMLConversion, compress_int8, convert_mlpackage
from targets.ios.coreml_check import CoreMLMetadata, inspect_mlpackage

SIZE = 32
HEADS = {"score": (1, 64), "embedding": (1, 64)}
"""Two outputs of one shape, ``score`` (Sigmoid of a Gemm) listed first: a mix-up by position shows."""
INPUT = {"data": (1, 3, SIZE, SIZE)}
METADATA = CoreMLMetadata(
    author="packager tests",
    version="1.2.3",
    short_description="two-head embedder",
    license="Apache-2.0",
    user_defined={
        "preprocessing": '{"mean": [127.5, 127.5, 127.5], "layout": "NCHW"}',
        "output": "embedding",
    },
)


def _heads() -> onnx.ModelProto:
    """data [1, 3, 32, 32] -> Conv/BN/PRelu stem 3->16 (432 weights: stays FP16 in int8), Conv/BN/PRelu
    16->32 (4608), GlobalAveragePool, Flatten, then ``score`` = Sigmoid(Gemm 32->64) and ``embedding`` =
    Gemm 32->64 (2048 weights each, exactly coremltools' default threshold, so its default skips them)."""
    b = model_factory._Builder(seed=0)
    x = b.conv_bn_prelu(b.normalize("data"), 3, 16, 3, 2)
    x = b.conv_bn_prelu(x, 16, 32, 3, 2)
    flat = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    b.gemm(flat, 32, 64, "embedding", "fc")
    b.gemm(flat, 32, 64, "score_logits", "score_fc")
    b.nodes.append(helper.make_node("Sigmoid", ["score_logits"], ["score"], name="score_sigmoid"))
    return b.model("two_heads", "data", SIZE, {"score": 64, "embedding": 64}, 13)


def _bicubic() -> onnx.ModelProto:
    """Conv then a bicubic Resize x2 (node ``upsample_bicubic``, output ``up``): onnx2tf writes TF's
    ResizeBicubic, which coremltools 9 cannot convert (DESIGN §5.27)."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.3, (3, 3, 3, 3)).astype(np.float32), "w")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    roi = numpy_helper.from_array(np.zeros(0, np.float32), "roi")
    nodes = [
        helper.make_node("Conv", ["data", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["c", "roi", "scales"], ["up"], name="upsample_bicubic", mode="cubic"),
    ]
    graph = helper.make_graph(
        nodes,
        "bicubic",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("up", TensorProto.FLOAT, [1, 3, 32, 32])],
        [w, scales, roi],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _odd_names() -> onnx.ModelProto:
    """Names Core ML refuses as they are: input ``input.1``, outputs ``/fc/Gemm_output_0``, ``1relu``."""
    gemm = "/fc/Gemm_output_0"
    nodes = [
        helper.make_node("GlobalAveragePool", ["input.1"], ["pooled"], name="gap"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "w"], [gemm], name="/fc/Gemm", transB=1),
        helper.make_node("Relu", [gemm], ["1relu"], name="relu"),
    ]
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    graph = helper.make_graph(
        nodes,
        "odd_names",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in (gemm, "1relu")],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Abs": "abs", "Exp": "exp", "Floor": "floor"}
UNARY |= {"Ceil": "ceil", "Sin": "sin", "Cos": "cos", "Softsign": "softsign", "Elu": "elu", "Neg": "mul"}
"""ONNX op -> the MIL op computing it: twelve outputs, one op each."""


def _twelve_outputs() -> onnx.ModelProto:
    """x [1, 3, 4, 4] -> ``out_<op>`` = op(x) for each op of UNARY. With more than ten outputs the
    signature's sorted keys (``output_10`` before ``output_2``) and the graph's ``Identity_<i>`` differ
    in order, so pairing them by index swaps outputs."""
    names = [f"out_{op.lower()}" for op in UNARY]
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], [name], name=op.lower()) for op, name in zip(UNARY, names, strict=True)],
        "twelve",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3, 4, 4]) for name in names],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="session")
def ios_onnx(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ios_onnx")
    builders = {"heads": _heads, "bicubic": _bicubic, "odd_names": _odd_names, "twelve": _twelve_outputs}
    return {name: model_factory.save(build(), root / f"{name}.onnx") for name, build in builders.items()}


@pytest.fixture(scope="session")
def ios_saved_models(ios_onnx: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """onnx2tf, once per model and session: ``{name: FloatConversion}``, made on first use."""
    made: dict[str, FloatConversion] = {}

    def get(name: str) -> FloatConversion:
        if name not in made:
            made[name] = convert_float(ios_onnx[name], tmp_path_factory.mktemp(f"tf_{name}"))
        return made[name]

    return get


def _convert(saved, onnx_path: Path, out: Path, target: str = "iOS15") -> CoreMLConversion:
    model = onnx.load(str(onnx_path))
    shapes = [tuple(d.dim_value for d in i.type.tensor_type.shape.dim) for i in model.graph.input]
    return convert_mlpackage(
        saved.saved_model,
        out,
        input_name=model.graph.input[0].name,
        input_shape=shapes[0],
        output_names=[o.name for o in model.graph.output],
        minimum_deployment_target=target,  # type: ignore[arg-type]
        metadata=METADATA,
        onnx_model=onnx_path,
    )


@pytest.fixture(scope="module")
def fp16(ios_saved_models, ios_onnx, tmp_path_factory: pytest.TempPathFactory) -> CoreMLConversion:
    out = tmp_path_factory.mktemp("coreml") / "heads.mlpackage"
    return _convert(ios_saved_models("heads"), ios_onnx["heads"], out)


@pytest.fixture(scope="module")
def int8(fp16: CoreMLConversion) -> CoreMLCompression:
    return compress_int8(fp16.path, fp16.path.with_name("heads_int8.mlpackage"))


def _producer(package: Path, feature: str) -> str:
    """Type of the op computing ``feature`` in the ML Program, looking through casts (FP16 -> FP32)."""
    import coremltools as ct

    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    block = next(iter(spec.mlProgram.functions["main"].block_specializations.values()))
    producers = {out.name: op for op in block.operations for out in op.outputs}
    op = producers[feature]
    while op.type in ("cast", "identity"):
        op = producers[op.inputs["x"].arguments[0].name]
    return op.type


# --- structure ------------------------------------------------------------------------------------


def test_fp16_package_is_an_ml_program_with_fp16_weights_and_the_onnx_io(fp16: CoreMLConversion) -> None:
    facts = inspect_mlpackage(
        fp16.path, expected_inputs=INPUT, expected_outputs=HEADS, expected_weight_dtype="float16"
    )
    assert (facts.model_type, facts.spec_version, facts.deployment_target) == ("mlProgram", 6, "iOS15")
    assert list(facts.weight_dtypes) == ["float16"] and facts.quantized == 0
    assert [(f.name, f.dtype, f.shape) for f in facts.inputs] == [("data", "float32", (1, 3, SIZE, SIZE))]
    assert {(f.name, f.dtype, f.shape) for f in facts.outputs} == {
        (n, "float32", s) for n, s in HEADS.items()
    }
    assert [f.name for f in fp16.outputs] == list(HEADS)  # ONNX order
    assert fp16.coremltools_version == "9.0" and facts.converter.startswith("coremltools 9.0 from tensorflow")
    assert facts.size_mb == fp16.size_mb > 0 and facts.weight_bytes > 0


def test_outputs_are_named_by_signature_not_position(fp16: CoreMLConversion) -> None:
    """``score`` is listed first in ONNX and computed by a Sigmoid: its Core ML feature must be too."""
    assert _producer(fp16.path, "score") == "sigmoid"
    assert _producer(fp16.path, "embedding") != "sigmoid"


def test_more_than_ten_outputs_keep_their_names(ios_saved_models, ios_onnx, tmp_path: Path) -> None:
    conversion = _convert(ios_saved_models("twelve"), ios_onnx["twelve"], tmp_path / "twelve.mlpackage")
    assert {op: _producer(conversion.path, f"out_{op.lower()}") for op in UNARY} == UNARY
    assert [f.name for f in conversion.outputs] == [f"out_{op.lower()}" for op in UNARY]


def test_invalid_onnx_names_become_core_ml_feature_names(ios_saved_models, ios_onnx, tmp_path: Path) -> None:
    conversion = _convert(ios_saved_models("odd_names"), ios_onnx["odd_names"], tmp_path / "odd.mlpackage")
    assert conversion.onnx_names == {
        "input_1": "input.1",
        "_fc_Gemm_output_0": "/fc/Gemm_output_0",
        "_1relu": "1relu",
    }
    assert _producer(conversion.path, "_1relu") == "relu"
    inspect_mlpackage(
        conversion.path,
        expected_inputs={"input.1": (1, 3, 8, 8)},
        expected_outputs={"/fc/Gemm_output_0": (1, 4), "1relu": (1, 4)},
        expected_weight_dtype="float16",
    )


def test_feature_names_keep_names_distinct() -> None:
    names = ["a.b", "a_b", "int8", "fc1", "out:0"]
    assert feature_names(names) == {
        "a.b": "a_b_0",
        "a_b": "a_b",
        "int8": "int8_workaround",
        "fc1": "fc1",
        "out:0": "out_0",
    }


def test_metadata_round_trips_without_the_conversion_date(fp16: CoreMLConversion) -> None:
    import coremltools as ct

    facts = inspect_mlpackage(
        fp16.path, expected_inputs=INPUT, expected_outputs=HEADS, expected_weight_dtype="float16"
    )
    assert facts.metadata == METADATA
    stored = ct.models.MLModel(str(fp16.path), skip_model_load=True).get_spec().description.metadata
    assert "com.github.apple.coremltools.conversion_date" not in stored.userDefined


def test_conversion_is_byte_for_byte_repeatable(ios_saved_models, ios_onnx, fp16, tmp_path: Path) -> None:
    again = _convert(ios_saved_models("heads"), ios_onnx["heads"], tmp_path / "again.mlpackage")

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(again.path) == files(fp16.path)


def test_int8_quantizes_every_weight_above_the_threshold(int8: CoreMLCompression, fp16) -> None:
    facts = inspect_mlpackage(
        int8.path, expected_inputs=INPUT, expected_outputs=HEADS, expected_weight_dtype="int8"
    )
    assert int8.quantized == facts.quantized == facts.weight_dtypes["int8"] == 3  # conv 16->32, two Gemms
    assert int8.kept_float == facts.kept_float
    assert int8.kept_float["at most 512 elements (weight_threshold)"] >= 1  # the 432-weight stem conv
    assert set(int8.kept_float) <= {
        "at most 512 elements (weight_threshold)",
        "1-D (coremltools never quantizes these)",
    }
    assert int8.size_mb < int8.source_size_mb == fp16.size_mb
    # constexpr_affine_dequantize is an iOS16 op: quantizing an iOS15 package raises its target.
    assert (int8.deployment_target, int8.raised_from, facts.spec_version) == ("iOS16", "iOS15", 7)
    assert facts.metadata == METADATA


def test_conversion_and_compression_leave_no_temporary_package(
    ios_saved_models, ios_onnx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # coremltools removes its temporary packages only at exit, which a forked step worker never runs.
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    conversion = _convert(ios_saved_models("heads"), ios_onnx["heads"], tmp_path / "h.mlpackage")
    compress_int8(conversion.path, tmp_path / "h_int8.mlpackage")
    assert list(temp.glob("*.mlpackage")) == []  # (TensorFlow's autograph .py files are its own)


def test_int8_for_ios18_uses_its_blockwise_format(ios_saved_models, ios_onnx, tmp_path: Path) -> None:
    conversion = _convert(ios_saved_models("heads"), ios_onnx["heads"], tmp_path / "h18.mlpackage", "iOS18")
    compression = compress_int8(conversion.path, tmp_path / "h18_int8.mlpackage")
    facts = inspect_mlpackage(
        compression.path, expected_inputs=INPUT, expected_outputs=HEADS, expected_weight_dtype="int8"
    )
    assert (facts.deployment_target, compression.raised_from, facts.quantized) == ("iOS18", None, 3)


def test_the_default_threshold_would_leave_layers_float(fp16: CoreMLConversion, tmp_path: Path) -> None:
    """With coremltools' default (2048) both 2048-weight Gemms stay FP16: inspect names them (§5.23)."""
    skipped = compress_int8(fp16.path, tmp_path / "default.mlpackage", weight_threshold=2048)
    assert skipped.quantized == 1
    with pytest.raises(ConversionError) as caught:
        inspect_mlpackage(
            skipped.path, expected_inputs=INPUT, expected_outputs=HEADS, expected_weight_dtype="int8"
        )
    assert str(caught.value).count("(2048 elements) is float16, above weight_threshold 512") == 2


def test_inspect_lists_every_wrong_name_shape_and_dtype(int8: CoreMLCompression) -> None:
    with pytest.raises(ConversionError) as caught:
        inspect_mlpackage(
            int8.path,
            expected_inputs={"data": (1, 3, 64, 64)},
            expected_outputs={"score": (1, 32), "embeddings": (1, 64)},
            expected_weight_dtype="float16",
        )
    message = str(caught.value)
    assert "input data is [1, 3, 32, 32], expected [1, 3, 64, 64]" in message
    assert "output score is [1, 64], expected [1, 32]" in message
    assert "no output embeddings" in message
    assert "unexpected output embedding" in message
    assert message.count("is int8, expected float16") == 3


def test_inspect_lists_ten_problems_and_counts_the_rest(fp16: CoreMLConversion) -> None:
    wrong = {f"head_{i}": (1, 64) for i in range(12)}
    with pytest.raises(ConversionError, match=r"no output head_9; and 3 more\."):
        inspect_mlpackage(
            fp16.path, expected_inputs=INPUT, expected_outputs=wrong, expected_weight_dtype="float16"
        )


def test_inspect_rejects_float_weights_in_an_int8_package(fp16: CoreMLConversion) -> None:
    with pytest.raises(ConversionError, match="above weight_threshold 512"):
        inspect_mlpackage(
            fp16.path, expected_inputs=INPUT, expected_outputs=HEADS, expected_weight_dtype="int8"
        )


# --- failures -------------------------------------------------------------------------------------


def test_coremltools_raises_on_bicubic_resize(ios_saved_models) -> None:
    """Pins the message :func:`targets.ios.coreml._failure` parses."""
    import coremltools as ct

    with pytest.raises(NotImplementedError, match=r"^Conversion for TF op 'ResizeBicubic' not implemented\."):
        ct.convert(
            str(ios_saved_models("bicubic").saved_model),
            source="tensorflow",
            convert_to="mlprogram",
            inputs=[ct.TensorType(name="data", shape=(1, 3, 16, 16))],
        )


def test_unsupported_op_names_the_onnx_node_and_the_fix(ios_saved_models, ios_onnx, tmp_path: Path) -> None:
    with pytest.raises(ConversionError) as caught:
        _convert(ios_saved_models("bicubic"), ios_onnx["bicubic"], tmp_path / "bicubic.mlpackage")
    error = caught.value
    assert (error.tool, error.node) == ("coremltools", "upsample_bicubic")
    assert "TF op ResizeBicubic (made from ONNX Resize node 'upsample_bicubic')" in str(error)
    assert "drop coreml from [ios].runtimes" in str(error)
    assert "\n" not in str(error) and not (tmp_path / "bicubic.mlpackage").exists()


def test_unsupported_op_without_the_onnx_model_names_the_tf_node(ios_saved_models, tmp_path: Path) -> None:
    with pytest.raises(ConversionError) as caught:
        convert_mlpackage(
            ios_saved_models("bicubic").saved_model,
            tmp_path / "bicubic.mlpackage",
            input_name="data",
            input_shape=(1, 3, 16, 16),
            output_names=["up"],
            minimum_deployment_target="iOS15",
            metadata=METADATA,
        )
    assert "ResizeBicubic" in (caught.value.node or "")
    assert "made from an ONNX op onnx2tf turned into it" in str(caught.value)


# --- prediction -----------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the refusal off macOS")
def test_runner_refuses_off_macos(fp16: CoreMLConversion) -> None:
    from packager.validate.formats import NotRunnable

    with pytest.raises(NotRunnable) as caught:
        CoreMLRunner(fp16.path, label="fp16 of heads", reference_names=list(HEADS))
    assert caught.value.not_validated_reason == MACOS_ONLY


@pytest.mark.skipif(sys.platform != "darwin", reason=MACOS_ONLY)
def test_prediction_matches_the_saved_model(fp16: CoreMLConversion, ios_saved_models) -> None:
    """Each output, fetched by ONNX name, is the SavedModel's ``output_<ONNX index>`` within FP16 error."""
    import tensorflow as tf

    batch = np.random.default_rng(0).uniform(0, 255, (3, 3, SIZE, SIZE)).astype(np.float32)
    signature = tf.saved_model.load(str(ios_saved_models("heads").saved_model)).signatures["serving_default"]
    runs = [signature(data=tf.constant(sample[None])) for sample in batch]
    expected = {
        name: np.concatenate([r[f"output_{i}"].numpy() for r in runs]) for i, name in enumerate(HEADS)
    }
    runner = CoreMLRunner(fp16.path, reference_names=list(HEADS), reference_shapes=HEADS)
    got = runner.run_all(batch)
    assert set(got) == set(HEADS)
    for name, want in expected.items():
        assert got[name].shape == want.shape and got[name].dtype == np.float32
        cosine = (got[name] * want).sum(1) / (
            np.linalg.norm(got[name], axis=1) * np.linalg.norm(want, axis=1)
        )
        assert cosine.min() > 0.999, name
        np.testing.assert_allclose(got[name], want, atol=0.02 * np.abs(want).max(), err_msg=name)
    assert len(runner.time(batch[0], runs=3, warmup=1)) == 3
