"""targets/android/codegen.py: the generated Android module, checked without a phone (DESIGN §7).

The sample module (tests/kotlin/sample.py) covers both runtimes, every layout, channel order and resize
mode, float/int8/uint8 TFLite I/O and the three delegates. Its Kotlin must compile with kotlinc against
Java stubs of the real APIs (targets/android/stubs, each citing its source), which must in turn reject wrong
method names, argument types and arities; its preprocessing must give packager.preprocess's tensors on a
plain JVM; ktlint must pass; and rendering must be byte-for-byte repeatable.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from kotlin.sample import MODULE, PACKAGE, sample_module
from kotlin.toolchain import Toolchain, toolchain

from packager.config import InputSpec
from packager.preprocess import to_tensor
from targets.android.codegen import (
    CodegenError,
    Preprocessing,
    TfliteOutput,
    kotlin_float,
    kotlin_name,
    kotlin_string,
    render_files,
    render_module,
)

MAIN = Path(__file__).parent / "kotlin" / "PreprocessMain.kt"
PHOTOS = Path(__file__).resolve().parents[1] / "examples" / "faceid" / "data"
TOLERANCE = 1e-5


@pytest.fixture(scope="session")
def kotlin_tools() -> Toolchain:
    return toolchain()


MUTATIONS = [
    pytest.param(
        "FaceEmbedderTflite.kt",
        'options.setUseXNNPACK(accelerator != "cpu")',
        'options.setUseXnnpack(accelerator != "cpu")',
        "Unresolved reference",
        id="litert-method-name",
    ),
    pytest.param(
        "FaceDetectorOrt.kt",
        "OnnxTensor.createTensor(env, FloatBuffer.wrap(input), INPUT_SHAPE)",
        "OnnxTensor.createTensor(env, FloatBuffer.wrap(input), intArrayOf(1, 3, 96, 128))",
        "mismatch",
        id="ort-argument-type",
    ),
    pytest.param(
        "FaceEmbedderOrt.kt",
        'options.addXnnpack(mapOf("intra_op_num_threads" to "4"))',
        "options.addXnnpack()",
        "No value passed for parameter",
        id="ort-arity",
    ),
    pytest.param(
        "FaceDetectorTflite.kt",
        "GpuDelegateFactory.Options().setPrecisionLossAllowed(true)",
        "GpuDelegateFactory.Options().setPrecisionLossAllowed(true, false)",
        "Too many arguments",
        id="litert-gpu-arity",
    ),
    pytest.param(
        "FaceEmbedderPreprocessor.kt",
        "bitmap.getPixels(argb, 0, width, 0, 0, width, height)",
        "bitmap.getPixels(argb, 0, width, 0, 0, width)",
        "No value passed for parameter",
        id="android-bitmap-arity",
    ),
    pytest.param(
        "ModelAssets.kt",
        "fd.startOffset, fd.declaredLength",
        "fd.startOffset.toInt(), fd.declaredLength",
        "mismatch",
        id="android-argument-type",
    ),
]


@dataclasses.dataclass(frozen=True)
class Compile:
    classes: Path
    output: str
    returncode: int


def _finish(job: subprocess.Popen, classes: Path, started: float, label: str) -> Compile:
    try:
        stdout, stderr = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
    seconds = time.perf_counter() - started
    print(f"kotlinc {label}: finished {seconds:.1f} s after both started, exit {job.returncode}")
    return Compile(classes, stdout + stderr, job.returncode)


@pytest.fixture(scope="session")
def compiles(kotlin_tools: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Compile]:
    """Two kotlinc runs side by side: the sample module with the JVM test driver (warnings are errors),
    and one copy with every mutation of :data:`MUTATIONS` (each on its own line), which must fail."""
    root = tmp_path_factory.mktemp("kotlin")
    good = [p for p in render_module(sample_module(), root / "good") if p.suffix == ".kt"]
    bad = [p for p in render_module(sample_module(), root / "mutants") if p.suffix == ".kt"]
    by_name = {p.name: p for p in bad}
    for param in MUTATIONS:
        file, old, new, _ = param.values
        text = by_name[file].read_text()
        assert text.count(old) == 1, f"{old!r} is not exactly once in {file}: update the mutation"
        by_name[file].write_text(text.replace(old, new))
    started = time.perf_counter()
    jobs = {
        "good": (kotlin_tools.kotlinc_start([*good, MAIN], root / "classes", "-Werror"), root / "classes"),
        "mutants": (kotlin_tools.kotlinc_start(bad, root / "mutant-classes"), root / "mutant-classes"),
    }
    return {label: _finish(job, classes, started, label) for label, (job, classes) in jobs.items()}


@pytest.fixture(scope="session")
def compiled(compiles: dict[str, Compile]) -> Path:
    """The classes of the generated module and the JVM test driver."""
    done = compiles["good"]
    assert done.returncode == 0, f"generated Kotlin does not compile:\n{done.output}"
    return done.classes


def test_generated_module_compiles(compiled: Path) -> None:
    classes = {p.name for p in (compiled / PACKAGE.replace(".", "/")).glob("*.class")}
    for name in (
        "FaceEmbedderOrt",
        "FaceEmbedderTflite",
        "FaceDetectorTflite",
        "GrayClassifierTflite",
        "SegLiteOrt",
    ):
        assert f"{name}.class" in classes


# --- the stubs catch wrong calls ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mutant_errors(compiles: dict[str, Compile]) -> dict[str, list[str]]:
    """kotlinc's errors on the mutated copy, ``"<line>: <message>"`` by file name."""
    done = compiles["mutants"]
    assert done.returncode != 0, "kotlinc accepted the mutated module: the stubs check nothing"
    errors: dict[str, list[str]] = {}
    for line in done.output.splitlines():
        match = re.match(r"(?:.*/)?([A-Za-z]+\.kt):(\d+):\d+: error: (.*)", line)
        if match:
            errors.setdefault(match[1], []).append(f"{match[2]}: {match[3]}")
    return errors


def _mutated_line(text: str, old: str, new: str) -> int:
    start = text[: text.index(old)].count("\n") + 1
    pairs = zip(old.splitlines(), new.splitlines(), strict=True)
    return start + next(i for i, (a, b) in enumerate(pairs) if a != b)


@pytest.mark.parametrize(("file", "old", "new", "message"), MUTATIONS)
def test_stubs_reject_wrong_calls(
    mutant_errors: dict[str, list[str]], file: str, old: str, new: str, message: str
) -> None:
    """kotlinc reports an error of the expected kind on exactly the mutated line."""
    text = next(t for p, t in render_files(sample_module()).items() if p.endswith("/" + file))
    line = _mutated_line(text, old, new)
    found = [e for e in mutant_errors.get(file, []) if e.startswith(f"{line}: ")]
    assert found, f"no kotlinc error at {file}:{line}; errors there: {mutant_errors.get(file)}"
    assert any(message.lower() in e.lower() for e in found), found


def test_mutants_fail_only_where_mutated(mutant_errors: dict[str, list[str]]) -> None:
    """No collateral errors: each error kotlinc reports on the mutated copy is on a mutated line."""
    rendered = render_files(sample_module())
    expected: dict[str, set[int]] = {}
    for param in MUTATIONS:
        file, old, new, _ = param.values
        text = next(t for p, t in rendered.items() if p.endswith("/" + file))
        expected.setdefault(file, set()).add(_mutated_line(text, old, new))
    reported = {file: {int(e.split(":")[0]) for e in errors} for file, errors in mutant_errors.items()}
    assert reported == expected, mutant_errors


# --- preprocessing on a plain JVM equals packager.preprocess ---------------------------------------------


def _natural_image(height: int, width: int, seed: int) -> np.ndarray:
    """A photo-like BGR image: smooth colour fields, a gradient, shapes with sharp edges, sensor noise."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(
        rng.uniform(0, 255, (5, 7, 3)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC
    )
    ramp = np.linspace(-40, 40, width, dtype=np.float32)[None, :, None]
    image = base + ramp + rng.normal(0, 6, (height, width, 3)).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    cv2.circle(image, (width // 3, height // 2), max(2, min(height, width) // 5), (20, 200, 240), -1)
    cv2.rectangle(image, (width // 2, height // 5), (width - 3, height // 2), (250, 30, 90), -1)
    return image


def _images() -> dict[str, np.ndarray]:
    """At each model's size, bigger and smaller than all, exactly twice one (OpenCV's area path), a photo."""
    images = {"odd_173x131": _natural_image(131, 173, 1), "small_45x33": _natural_image(33, 45, 2)}
    images["double_224x224"] = _natural_image(224, 224, 3)
    # Scaled sizes on .5, where Python's round() goes to even: letterbox 101 * 0.5, center-crop 129 * 0.5
    images["tie_101x192"] = _natural_image(192, 101, 5)
    images["tie_129x128"] = _natural_image(128, 129, 6)
    for model in sample_module().models:
        pre = model.preprocessing
        images[f"at_{model.name}"] = _natural_image(pre.height, pre.width, 4)
    photos = sorted(PHOTOS.rglob("*.png"))[:1] if PHOTOS.is_dir() else []
    for photo in photos:  # the example's real face photos, when prepare_data.py has fetched them
        images["photo"] = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    return images


def _write_argb(path: Path, bgr: np.ndarray) -> None:
    b, g, r = (bgr[..., i].astype(np.uint32) for i in range(3))
    argb = (np.uint32(0xFF) << 24) | (r << 16) | (g << 8) | b
    header = np.array([bgr.shape[1], bgr.shape[0]], "<i4").tobytes()
    path.write_bytes(header + argb.astype("<u4").tobytes())


def _spec(pre: Preprocessing) -> InputSpec:
    return InputSpec(
        size=[pre.height, pre.width],
        channels=pre.channels,
        mean=list(pre.mean),
        std=list(pre.std),
        layout=pre.layout,
        resize=pre.resize,
    )


@pytest.fixture(scope="session")
def jvm_outputs(kotlin_tools: Toolchain, compiled: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated preprocessing (and TFLite tensor coding) run on the JVM over every test image."""
    work = tmp_path_factory.mktemp("jvm")
    for name, image in _images().items():
        _write_argb(work / f"{name}.argb", image)
    np.asarray(_tensorio_values(), "<f4").tofile(work / "tensorio.f32")
    classpath = ":".join(map(str, (compiled, kotlin_tools.stubs, kotlin_tools.stdlib)))
    cmd = [
        "java",
        "-cp",
        classpath,
        f"{PACKAGE}.PreprocessMainKt",
        str(work),
        *map(str, sorted(work.glob("*.argb"))),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return work


@pytest.mark.parametrize("model", [m.name for m in sample_module().models])
def test_kotlin_preprocessing_matches_python(jvm_outputs: Path, model: str) -> None:
    pre = next(m.preprocessing for m in sample_module().models if m.name == model)
    worst = {}
    for name, image in _images().items():
        expected = to_tensor(image, _spec(pre))
        got = np.fromfile(jvm_outputs / f"{name}.{model}.f32", "<f4")
        assert got.size == expected.size, (name, got.size, expected.shape)
        worst[name] = float(np.abs(got - expected.ravel()).max())
    print(f"{model}: max |kotlin - python| per image {worst}")
    assert max(worst.values()) <= TOLERANCE, worst


TENSOR_SCALE = np.float32(0.0431)
"""The scale PreprocessMain.kt quantizes with."""


def _tensorio_values() -> np.ndarray:
    """Normal values, two exact ties (x / scale = +-0.5: ties to even gives 0) and two that saturate."""
    rng = np.random.default_rng(7)
    ties = [TENSOR_SCALE * np.float32(0.5), -TENSOR_SCALE * np.float32(0.5), 100.0, -100.0]
    return np.concatenate([rng.normal(0, 3, 56), ties]).astype(np.float32)


@pytest.mark.parametrize(("dtype", "zero"), [("int8", -3), ("uint8", 120)])
def test_tflite_tensor_coding_matches_host_runner(jvm_outputs: Path, dtype: str, zero: int) -> None:
    """Quantization, dequantization and the channels-last transpose as packager's TFLiteRunner does them."""
    scale = TENSOR_SCALE
    onnx = _tensorio_values().reshape(1, 3, 4, 5)
    info = np.iinfo(dtype)
    quantized = np.round(np.moveaxis(onnx, 1, -1) / scale) + np.float32(zero)
    expected = np.clip(quantized, info.min, info.max).astype(dtype)
    got = np.fromfile(jvm_outputs / f"tensorio.{dtype}.bin", dtype)
    np.testing.assert_array_equal(got, expected.ravel())
    back = np.moveaxis((expected.astype(np.float32) - np.float32(zero)) * scale, -1, 1)
    np.testing.assert_array_equal(np.fromfile(jvm_outputs / f"tensorio.{dtype}.f32", "<f4"), back.ravel())


# --- style, determinism, description checks ---------------------------------------------------------------


def test_ktlint_passes(kotlin_tools: Toolchain, tmp_path: Path) -> None:
    written = render_module(sample_module(), tmp_path)
    folder = tmp_path / MODULE
    files = [p for p in written if p.suffix in (".kt", ".kts")]
    started = time.perf_counter()
    done = kotlin_tools.ktlint_run(folder, files)
    print(f"ktlint: {len(files)} files in {time.perf_counter() - started:.1f} s")
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    first = render_module(sample_module(), tmp_path / "a")
    second = render_module(sample_module(), tmp_path / "b")
    rel = [p.relative_to(tmp_path / "a") for p in first]
    assert rel == [p.relative_to(tmp_path / "b") for p in second] == sorted(rel)
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a
        assert b"\r" not in a.read_bytes()
    expected = {
        "build.gradle.kts",
        "consumer-rules.pro",
        "README.md",
        ".editorconfig",
        f"src/main/kotlin/{PACKAGE.replace('.', '/')}/FaceEmbedderOrt.kt",
    }
    assert expected <= {str(p) for p in (r.relative_to(MODULE) for r in rel)}


def test_only_the_runtimes_used_are_dependencies() -> None:
    module = sample_module()
    ort_only = dataclasses.replace(module, models=tuple(m for m in module.models if m.name == "seg_lite"))
    gradle = render_files(ort_only)["build.gradle.kts"]
    assert "onnxruntime-android:1.23.2" in gradle and "litert" not in gradle
    gradle = render_files(module)["build.gradle.kts"]
    assert 'implementation("com.google.ai.edge.litert:litert:1.4.1")' in gradle
    assert "litert-gpu:1.4.1" in gradle  # the detector uses the GPU delegate


def test_description_problems_are_collected() -> None:
    module = sample_module()
    detector = module.models[1]
    tflite = detector.tflite
    outputs = (*tflite.primary.outputs[:2], TfliteOutput(name="lm", onnx_name="landmarkz", shape=(1, 10)))
    broken = dataclasses.replace(
        detector,
        tflite=dataclasses.replace(tflite, primary=dataclasses.replace(tflite.primary, outputs=outputs)),
        preprocessing=dataclasses.replace(detector.preprocessing, std=(1.0, 0.0)),
    )
    with pytest.raises(CodegenError) as caught:
        render_files(dataclasses.replace(module, models=(module.models[0], broken)))
    text = str(caught.value)
    assert "unknown ONNX output 'landmarkz'" in text
    assert "preprocessing.std needs 1 or 3" in text
    assert "ort.input_shape" not in text  # only what is wrong


def test_kotlin_names_and_literals() -> None:
    taken: set[str] = set()
    names = [kotlin_name(n, taken) for n in ("fc1", "box:0", "/model/Conv_1_output_0", "532", "val", "fc1")]
    assert names == ["fc1", "box0", "modelConv1Output0", "output532", "outputVal", "fc12"]
    assert kotlin_string('a"b\\c$d') == '"a\\"b\\\\c\\$d"'
    for value in (0.0431, 123.675, 1e-8, 1e20):  # the float32 Python computes with, written back exactly
        assert np.float32(kotlin_float(value)[:-1]) == np.float32(value)
