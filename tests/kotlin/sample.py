"""A sample :class:`AndroidModule` covering both runtimes, every layout, channel order and resize mode,
float, int8 and uint8 TFLite I/O, channels-last TFLite outputs, and the three delegates."""

from __future__ import annotations

from targets.android.codegen import (
    AndroidModule,
    ModelLoader,
    OrtArtifact,
    OutputInfo,
    Preprocessing,
    TfliteArtifact,
    TfliteFile,
    TfliteOutput,
    TfliteTensor,
)
from targets.ort_mobile.ep_config import ep_config

PACKAGE = "com.example.faceid"
MODULE = "faceid-models"


def _embedder() -> ModelLoader:
    pre = Preprocessing(height=112, width=112, channels="RGB", mean=(127.5,), std=(128.0,), layout="NCHW")
    out = OutputInfo(name="fc1", shape=(1, 128), kind="embedding", normalize="l2")

    def tfl(asset: str, precision: str, dtype: str, scale: float, zero: int, out_scale: float) -> TfliteFile:
        return TfliteFile(
            asset=asset,
            precision=precision,
            input=TfliteTensor(
                name="data", shape=(1, 112, 112, 3), dtype=dtype, scale=scale, zero_point=zero
            ),
            outputs=(
                TfliteOutput(
                    name="fc1", onnx_name="fc1", shape=(1, 128), dtype=dtype, scale=out_scale, zero_point=-3
                ),
            ),
        )

    return ModelLoader(
        name="face_embedder",
        preprocessing=pre,
        outputs=(out,),
        ort=OrtArtifact(
            asset="face_embedder/int8.ort",
            precision="int8",
            fallback_asset="face_embedder/fp32.ort",
            input_name="data",
            input_shape=(1, 3, 112, 112),
            plans=tuple(ep_config(["xnnpack", "cpu"], threads=4).plans),
        ),
        tflite=TfliteArtifact(
            primary=tfl("face_embedder/int8.tflite", "int8", "int8", 0.0078125, 0, 0.0431),
            fallbacks=(
                TfliteFile(
                    asset="face_embedder/fp32.tflite",
                    precision="fp32",
                    input=TfliteTensor(name="data", shape=(1, 112, 112, 3)),
                    outputs=(TfliteOutput(name="fc1", onnx_name="fc1", shape=(1, 128)),),
                ),
            ),
            delegate="xnnpack",
        ),
    )


def _detector() -> ModelLoader:
    pre = Preprocessing(height=96, width=128, resize="letterbox", channels="BGR", layout="NCHW")
    outputs = (
        OutputInfo(name="heatmap", shape=(1, 1, 24, 32), kind="dense"),
        OutputInfo(name="box:0", shape=(1, 4, 24, 32)),
        OutputInfo(name="landmarks", shape=(1, 10)),
    )

    def tfl(asset: str, precision: str) -> TfliteFile:
        return TfliteFile(
            asset=asset,
            precision=precision,
            input=TfliteTensor(name="input", shape=(1, 96, 128, 3)),
            outputs=(
                TfliteOutput(name="box__0", onnx_name="box:0", shape=(1, 24, 32, 4)),
                TfliteOutput(name="heatmap", onnx_name="heatmap", shape=(1, 24, 32, 1)),
                TfliteOutput(name="landmarks", onnx_name="landmarks", shape=(1, 10)),
            ),
        )

    return ModelLoader(
        name="face_detector",
        preprocessing=pre,
        outputs=outputs,
        ort=OrtArtifact(
            asset="face_detector/int8.ort",
            precision="int8",
            fallback_asset="face_detector/fp32.ort",
            input_name="input",
            input_shape=(1, 3, 96, 128),
            plans=tuple(ep_config(["nnapi", "xnnpack"], threads=2, nnapi_flags=["USE_FP16"]).plans),
        ),
        tflite=TfliteArtifact(
            primary=tfl("face_detector/fp16.tflite", "fp16"),
            fallbacks=(tfl("face_detector/fp32.tflite", "fp32"),),
            delegate="gpu",
            allow_fp16=True,
        ),
    )


def _classifier() -> ModelLoader:
    pre = Preprocessing(
        height=64, width=64, resize="center-crop", channels="GRAY", mean=(127.0,), std=(64.0,), layout="NHWC"
    )
    return ModelLoader(
        name="gray_classifier",
        preprocessing=pre,
        outputs=(OutputInfo(name="logits", shape=(1, 10), kind="logits"),),
        tflite=TfliteArtifact(
            primary=TfliteFile(
                asset="gray_classifier/int8.tflite",
                precision="int8",
                input=TfliteTensor(
                    name="image", shape=(1, 64, 64, 1), dtype="uint8", scale=0.0157, zero_point=127
                ),
                outputs=(
                    TfliteOutput(
                        name="logits",
                        onnx_name="logits",
                        shape=(1, 10),
                        dtype="int8",
                        scale=0.1,
                        zero_point=5,
                    ),
                ),
            ),
            delegate="nnapi",
        ),
    )


def _segmenter() -> ModelLoader:
    pre = Preprocessing(
        height=60,
        width=80,
        channels="RGB",
        mean=(123.675, 116.28, 103.53),
        std=(58.395, 57.12, 57.375),
        layout="NHWC",
    )
    return ModelLoader(
        name="seg_lite",
        preprocessing=pre,
        outputs=(OutputInfo(name="mask", shape=(1, 60, 80, 1), kind="dense"),),
        ort=OrtArtifact(
            asset="seg_lite/fp32.ort",
            precision="fp32",
            input_name="pixels",
            input_shape=(1, 60, 80, 3),
            plans=tuple(ep_config(["cpu"], threads=4).plans),
        ),
    )


def sample_module() -> AndroidModule:
    return AndroidModule(
        package=PACKAGE,
        module=MODULE,
        models=(_embedder(), _detector(), _classifier(), _segmenter()),
        threads=4,
    )
