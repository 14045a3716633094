"""A sample :class:`IosPackage` covering both runtimes, every layout, channel order and resize mode, Core ML
files with channels-last input and outputs under other names, Core ML fallbacks, and the three CoreML EP
option sets (MLProgram on ALL, NeuralNetwork on CPUAndGPU, none); and ``main.swift``, the driver that runs
its generated preprocessing on a plain Swift toolchain."""

from __future__ import annotations

from pathlib import Path

from targets.ios.codegen import (
    CoreMLArtifact,
    CoreMLFile,
    CoreMLOutput,
    IosPackage,
    ModelLoader,
    OrtArtifact,
    SwiftPackagePin,
)
from targets.loaders import OutputInfo, Preprocessing
from targets.ort_mobile.ep_config import CoreMLOptions, ep_config

MODULE = "FaceKit"
BUNDLE_VERSION = "faceid 1.4.0 (manifest 3f2a9c1e)"
MAIN = Path(__file__).with_name("main.swift")
ORT_URL = "https://github.com/microsoft/onnxruntime-swift-package-manager"
RELEASE_PIN = SwiftPackagePin(url=ORT_URL, version="1.24.2", exact="1.24.2")
"""A tagged release with ``appendCoreMLExecutionProvider(withOptionsV2:)``."""
REVISION_PIN = SwiftPackagePin(
    url=ORT_URL, version="1.23.0", revision="b2e6c9de2a3dffe21b8579239c9497c3c21e88be"
)
"""The untagged 1.23.0 commit, whose Objective-C sources predate V2."""


def _embedder() -> ModelLoader:
    pre = Preprocessing(height=112, width=112, channels="RGB", mean=(127.5,), std=(128.0,), layout="NCHW")
    return ModelLoader(
        name="face_embedder",
        preprocessing=pre,
        outputs=(OutputInfo(name="fc1", shape=(1, 128), kind="embedding", normalize="l2"),),
        ort=OrtArtifact(
            resource="face_embedder/fp16.ort",
            precision="fp16",
            fallback_resource="face_embedder/fp32.ort",
            input_name="data",
            input_shape=(1, 3, 112, 112),
            plans=tuple(ep_config(["coreml", "cpu"], threads=4, source="[ios] ort_eps").plans),
        ),
        coreml=CoreMLArtifact(
            resource="face_embedder/int8-weights.mlpackage",
            precision="int8 weights, fp16 activations",
            fallbacks=(CoreMLFile(resource="face_embedder/fp16.mlpackage", precision="fp16"),),
            input_name="data",
            input_shape=(1, 3, 112, 112),
            outputs=(CoreMLOutput(name="fc1", onnx_name="fc1", shape=(1, 128)),),
            compute_units="ALL",
        ),
    )


def _detector() -> ModelLoader:
    pre = Preprocessing(height=96, width=128, resize="letterbox", channels="BGR", layout="NCHW")
    return ModelLoader(
        name="face_detector",
        preprocessing=pre,
        outputs=(
            OutputInfo(name="heatmap", shape=(1, 1, 24, 32), kind="dense"),
            OutputInfo(name="box:0", shape=(1, 4, 24, 32)),
            OutputInfo(name="landmarks", shape=(1, 10)),
        ),
        coreml=CoreMLArtifact(
            resource="face_detector/fp16.mlpackage",
            precision="fp16",
            input_name="input",
            input_shape=(1, 96, 128, 3),
            outputs=(
                CoreMLOutput(name="Identity", onnx_name="heatmap", shape=(1, 24, 32, 1)),
                CoreMLOutput(name="Identity_1", onnx_name="box:0", shape=(1, 24, 32, 4)),
                CoreMLOutput(name="Identity_2", onnx_name="landmarks", shape=(1, 10)),
            ),
            compute_units="CPUAndNeuralEngine",
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
        ort=OrtArtifact(
            resource="gray_classifier/fp32.ort",
            precision="fp32",
            input_name="image",
            input_shape=(1, 64, 64, 1),
            plans=tuple(ep_config(["cpu"], threads=2, source="[ios] ort_eps").plans),
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
    coreml = CoreMLOptions(model_format="NeuralNetwork", compute_units="CPUAndGPU")
    return ModelLoader(
        name="seg_lite",
        preprocessing=pre,
        outputs=(OutputInfo(name="mask", shape=(1, 60, 80, 1), kind="dense"),),
        ort=OrtArtifact(
            resource="seg_lite/fp32.ort",
            precision="fp32",
            input_name="pixels",
            input_shape=(1, 60, 80, 3),
            plans=tuple(ep_config(["coreml"], threads=4, coreml=coreml, source="[ios] ort_eps").plans),
        ),
        coreml=CoreMLArtifact(
            resource="seg_lite/fp16.mlpackage",
            precision="fp16",
            input_name="pixels",
            input_shape=(1, 60, 80, 3),
            outputs=(CoreMLOutput(name="mask", onnx_name="mask", shape=(1, 60, 80, 1)),),
            compute_units="CPUOnly",
        ),
    )


def sample_package(pin: SwiftPackagePin = RELEASE_PIN) -> IosPackage:
    return IosPackage(
        module=MODULE,
        models=(_embedder(), _detector(), _classifier(), _segmenter()),
        bundle_version=BUNDLE_VERSION,
        threads=4,
        ort_package=pin,
    )
