"""targets/ios/codegen.py: the generated Swift package, checked without a Mac (DESIGN §7).

The sample package (tests/swift_sample) covers both runtimes, every layout, channel order and resize mode,
channels-last Core ML tensors under other names and the CoreML EP option sets. Every generated Swift file
must parse (tree-sitter-swift); the package must typecheck with swiftc against stubs of the real APIs
(tests/swift/stubs), which must in turn reject wrong labels and types on exactly the mutated lines; its pure
preprocessing, compiled and run, must give packager.preprocess's tensors; SwiftPM must read its
Package.swift; and rendering must be byte-for-byte repeatable.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from swift.toolchain import SwiftToolchain, bundle_accessor, toolchain
from swift_sample import BUNDLE_VERSION, MAIN, MODULE, REVISION_PIN, sample_package

from packager.config import InputSpec
from packager.preprocess import to_tensor
from targets.ios.codegen import (
    CodegenError,
    IosPackage,
    cache_key,
    pure_sources,
    render_files,
    render_package,
    swift_float,
    swift_name,
    swift_string,
)
from targets.loaders import Preprocessing

PHOTO = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
"""A real photo that ships with matplotlib (a packager dependency), 512x600."""
EXAMPLE_PHOTOS = Path(__file__).resolve().parents[1] / "examples" / "faceid" / "data"
TOLERANCE = 1e-5
SRC = f"Sources/{MODULE}"


@pytest.fixture(scope="session")
def swift_tools() -> SwiftToolchain:
    return toolchain()


# --- syntax: every file parses ------------------------------------------------------------------------------


def _syntax_errors(source: bytes) -> list[str]:
    import tree_sitter
    import tree_sitter_swift

    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_swift.language()))
    found, stack = [], [parser.parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            row, column = node.start_point
            found.append(f"{row + 1}:{column + 1} {node.type} {node.text[:40]!r}")
        stack.extend(node.children)
    return found


def test_every_swift_file_parses() -> None:
    pytest.importorskip("tree_sitter_swift", reason="pip install tree-sitter-swift (the test extra)")
    sources = {p: t for p, t in render_files(sample_package()).items() if p.endswith(".swift")}
    started = time.perf_counter()
    errors = {path: found for path, text in sources.items() if (found := _syntax_errors(text.encode()))}
    print(f"tree-sitter: {len(sources)} files in {1000 * (time.perf_counter() - started):.0f} ms")
    assert not errors, errors
    assert _syntax_errors(b"func f( -> Int { 1 }\n"), "the parser reports nothing: the check checks nothing"


# --- the package typechecks, and the stubs catch wrong calls ----------------------------------------------

MUTATIONS = [
    pytest.param(
        "FaceEmbedderOrt.swift",
        "ORTSession(env: env, modelPath: path, sessionOptions: options)",
        "ORTSession(env: env, path: path, sessionOptions: options)",
        "incorrect argument label",
        id="ort-label",
    ),
    pytest.param(
        "GrayClassifierOrt.swift",
        "try options.setIntraOpNumThreads(2)",
        "try options.setIntraOpNumThreads(Int(2))",
        "'Int32'",
        id="ort-type",
    ),
    pytest.param(
        "FaceDetectorCoreML.swift",
        "let result = try model.prediction(from: features)",
        "let result = try model.prediction(features)",
        "missing argument label 'from:'",
        id="coreml-label",
    ),
    pytest.param(
        "CoreMLSupport.swift",
        "MLMultiArray(shape: shape.map { NSNumber(value: $0) }, dataType: .float32)",
        "MLMultiArray(shape: shape, dataType: .float32)",
        "cannot convert value of type '[Int]'",
        id="coreml-type",
    ),
    pytest.param(
        "ImageSources.swift",
        "bytesPerRow: bytesPerRow, space: space, bitmapInfo: alpha",
        "bytesPerRow: bytesPerRow, space: space, bitmapInfo: CGImageAlphaInfo.noneSkipLast",
        "cannot convert value of type 'CGImageAlphaInfo'",
        id="coregraphics-type",
    ),
    pytest.param(
        "ImageSources.swift",
        "let bytesPerRow = CVPixelBufferGetBytesPerRow(pixelBuffer)",
        "let bytesPerRow = CVPixelBufferGetBytesPerRow(pixelBuffer, 0)",
        "extra argument",
        id="corevideo-arity",
    ),
]
REVISION_FILES = ("OrtSupport.swift", "ModelError.swift", "ModelResources.swift")
"""What differs on the untagged onnxruntime revision (OrtSupport.swift) and what it uses."""


def _write(package: IosPackage, root: Path) -> list[Path]:
    """The package's Swift sources under ``root`` plus the bundle accessor SwiftPM would generate."""
    sources = [p for p in render_package(package, root) if p.suffix == ".swift" and p.name != "Package.swift"]
    return [*sources, bundle_accessor(root)]


@pytest.fixture(scope="session")
def typechecks(
    swift_tools: SwiftToolchain, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, subprocess.CompletedProcess]:
    """swiftc -typecheck, two at a time: the sample package (``good``); the files the untagged onnxruntime
    revision changes (``revision``); and the package with one mutation of :data:`MUTATIONS` each (by test
    id: swiftc stops at the first file with errors, so one mutant a process), which must fail."""
    root = tmp_path_factory.mktemp("swift")
    good = _write(sample_package(), root / "good")
    revision = _write(sample_package(REVISION_PIN), root / "revision")
    revision = [p for p in revision if p.name in REVISION_FILES]
    jobs = {"good": good, "revision": [*revision, root / "good" / "resource_bundle_accessor.swift"]}
    for param in MUTATIONS:
        file, old, new, _ = param.values
        original = next(p for p in good if p.name == file)
        text = original.read_text()
        assert text.count(old) == 1, f"{old!r} is not exactly once in {file}: update the mutation"
        mutated = root / param.id / file
        mutated.parent.mkdir()
        mutated.write_text(text.replace(old, new))
        jobs[param.id] = [mutated if p == original else p for p in good]

    def typecheck(label: str) -> subprocess.CompletedProcess:
        started = time.perf_counter()
        done = swift_tools.typecheck(jobs[label])
        print(f"swiftc -typecheck {label}: {len(jobs[label])} files, {time.perf_counter() - started:.1f} s")
        return done

    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(jobs, pool.map(typecheck, jobs), strict=True))
    print(f"{len(jobs)} typechecks in {time.perf_counter() - started:.1f} s")
    return results


@pytest.mark.parametrize("label", ["good", "revision"])
def test_generated_package_typechecks(typechecks: dict[str, subprocess.CompletedProcess], label: str) -> None:
    done = typechecks[label]
    assert done.returncode == 0, f"generated Swift does not typecheck:\n{done.stdout}{done.stderr}"
    assert "warning:" not in done.stdout + done.stderr, done.stdout + done.stderr


def _errors(done: subprocess.CompletedProcess) -> list[tuple[str, int, str]]:
    """swiftc's errors as (file name, line, message)."""
    found = []
    for line in (done.stdout + done.stderr).splitlines():
        match = re.match(r"(?:.*/)?([\w+]+\.swift):(\d+):\d+: error: (.*)", line)
        if match:
            found.append((match[1], int(match[2]), match[3]))
    return found


@pytest.mark.parametrize(("file", "old", "new", "message"), MUTATIONS)
def test_stubs_reject_wrong_calls(
    request: pytest.FixtureRequest,
    typechecks: dict[str, subprocess.CompletedProcess],
    file: str,
    old: str,
    new: str,
    message: str,
) -> None:
    """swiftc fails with an error of the expected kind on the mutated line, and on no other line."""
    done = typechecks[request.node.callspec.id]
    assert done.returncode != 0, f"swiftc accepted {file} with {new!r}: the stubs check nothing"
    text = render_files(sample_package())[f"{SRC}/{file}"]
    line = text[: text.index(old)].count("\n") + 1
    errors = _errors(done)
    assert errors and all((f, n) == (file, line) for f, n, _ in errors), (line, errors)
    assert any(message.lower() in m.lower() for _, _, m in errors), errors


# --- preprocessing compiled and run in Swift equals packager.preprocess ------------------------------------


def _natural_image(height: int, width: int, seed: int) -> np.ndarray:
    """A photo-like BGR image: smooth colour fields, a gradient, shapes with sharp edges, sensor noise."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(
        rng.uniform(0, 255, (5, 7, 3)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC
    )
    ramp = np.linspace(-40, 40, width, dtype=np.float32)[None, :, None]
    image = np.clip(base + ramp + rng.normal(0, 6, (height, width, 3)).astype(np.float32), 0, 255)
    image = image.astype(np.uint8)
    cv2.circle(image, (width // 3, height // 2), max(2, min(height, width) // 5), (20, 200, 240), -1)
    cv2.rectangle(image, (width // 2, height // 5), (width - 3, height // 2), (250, 30, 90), -1)
    return image


def _images() -> dict[str, np.ndarray]:
    """A real photo, sizes bigger and smaller than all models, exactly twice one (OpenCV's area path),
    .5 ties of the letterbox and center-crop scaled sizes, and each model's own size."""
    photo = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    assert photo is not None, f"{PHOTO} is missing: matplotlib's sample data ships with it"
    images = {"grace_hopper": photo, "odd_173x131": _natural_image(131, 173, 1)}
    images["small_45x33"] = _natural_image(33, 45, 2)
    images["double_224x224"] = _natural_image(224, 224, 3)
    images["tie_101x192"] = _natural_image(192, 101, 5)
    images["tie_129x128"] = _natural_image(128, 129, 6)
    for model in sample_package().models:
        pre = model.preprocessing
        images[f"at_{model.name}"] = _natural_image(pre.height, pre.width, 4)
    for photo_path in sorted(EXAMPLE_PHOTOS.rglob("*.png"))[:1] if EXAMPLE_PHOTOS.is_dir() else []:
        images["example_photo"] = cv2.imread(str(photo_path), cv2.IMREAD_COLOR)
    return images


def _spec(pre: Preprocessing) -> InputSpec:
    return InputSpec(
        size=[pre.height, pre.width],
        channels=pre.channels,
        mean=list(pre.mean),
        std=list(pre.std),
        layout=pre.layout,
        resize=pre.resize,
    )


def _extra_values() -> np.ndarray:
    """An embedding (128) for the L2 normalisation and a [1, 3, 4, 5] tensor for the transposes."""
    rng = np.random.default_rng(11)
    return np.concatenate([rng.normal(0, 3, 128), rng.normal(0, 1, 60)]).astype(np.float32)


def _stdin(images: dict[str, np.ndarray]) -> bytes:
    """main.swift's input: RGBA rows padded by a few bytes on every other image (bytesPerRow > 4 * width)."""
    chunks = [struct.pack("<i", len(images))]
    for i, image in enumerate(images.values()):
        height, width = image.shape[:2]
        rgba = np.dstack([image[..., ::-1], np.full((height, width), 255, np.uint8)]).reshape(height, -1)
        pad = 12 if i % 2 else 0
        rows = np.pad(rgba, ((0, 0), (0, pad)), constant_values=77)
        chunks.append(struct.pack("<3i", width, height, 4 * width + pad) + rows.tobytes())
    extra = _extra_values()
    chunks.append(struct.pack("<i", extra.size) + extra.astype("<f4").tobytes())
    return b"".join(chunks)


@pytest.fixture(scope="session")
def swift_outputs(swift_tools: SwiftToolchain, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The generated pure Swift (preprocessing, outputs, tensors) compiled with main.swift and run once over
    every test image; its float32 output split per image and model."""
    folder = tmp_path_factory.mktemp("swift-run")
    sources = []
    for rel, text in pure_sources(sample_package()).items():
        path = folder / Path(rel).name
        path.write_text(text)
        sources.append(path)
    images = _images()
    started = time.perf_counter()
    done = swift_tools.run([*sources, MAIN], stdin=_stdin(images))
    print(f"swiftc -O + run over {len(images)} images: {time.perf_counter() - started:.1f} s")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    values = np.frombuffer(done.stdout, "<f4")
    per_image: dict[str, dict[str, np.ndarray]] = {}
    offset = 0
    for name in images:
        per_image[name] = {}
        for model in sample_package().models:
            size = int(np.prod(model.preprocessing.shape))
            per_image[name][model.name] = values[offset : offset + size]
            offset += size
    tail = values[offset:]
    assert tail.size == 128 + 60 + 60, f"main.swift wrote {tail.size} trailing values, expected 248"
    return {
        "images": images,
        "tensors": per_image,
        "l2": tail[:128],
        "nhwc": tail[128:188],
        "back": tail[188:],
    }


@pytest.mark.parametrize("model", [m.name for m in sample_package().models])
def test_swift_preprocessing_matches_python(swift_outputs: dict[str, object], model: str) -> None:
    pre = next(m.preprocessing for m in sample_package().models if m.name == model)
    worst = {}
    for name, image in swift_outputs["images"].items():  # type: ignore[union-attr]
        expected = to_tensor(image, _spec(pre)).ravel()
        got = swift_outputs["tensors"][name][model]  # type: ignore[index]
        assert got.size == expected.size, (name, got.size, expected.size)
        worst[name] = float(np.abs(got - expected).max())
    print(f"{model}: max |swift - python| per image {worst}")
    assert max(worst.values()) <= TOLERANCE, worst


def test_swift_output_helpers_match_python(swift_outputs: dict[str, object]) -> None:
    """L2 normalisation in double (packager's ``l2``); the channels-last transposes of the Core ML loaders."""
    extra = _extra_values()
    embedding = extra[:128].astype(np.float64)
    np.testing.assert_allclose(swift_outputs["l2"], embedding / np.linalg.norm(embedding), rtol=0, atol=1e-7)
    nchw = extra[128:].reshape(1, 3, 4, 5)
    np.testing.assert_array_equal(swift_outputs["nhwc"], np.moveaxis(nchw, 1, -1).ravel())
    np.testing.assert_array_equal(swift_outputs["back"], nchw.ravel())


# --- Package.swift as SwiftPM reads it ----------------------------------------------------------------------


def _dump_package(tools: SwiftToolchain, package: IosPackage, tmp: Path) -> dict:
    """``swift package dump-package`` (the manifest evaluated by SwiftPM itself, no network) in the chroot."""
    import json
    import shutil
    import tempfile

    from swift.toolchain import _in_chroot

    render_package(package, tmp)
    folder = Path(tempfile.mkdtemp(prefix="packager-", dir=tools.root / "tmp"))
    try:
        shutil.copytree(tmp / package.module, folder / package.module)
        inner = "/" + str(folder.relative_to(tools.root))
        cmd = ["swift", "package", "--package-path", f"{inner}/{package.module}", "dump-package"]
        done = _in_chroot(tools.root, cmd, inner, timeout=300)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_swiftpm_reads_the_manifest(swift_tools: SwiftToolchain, tmp_path: Path) -> None:
    manifest = _dump_package(swift_tools, sample_package(), tmp_path / "release")
    assert manifest["toolsVersion"]["_version"] == "5.9.0"
    platforms = {p["platformName"]: p["version"] for p in manifest["platforms"]}
    assert platforms == {"ios": "15.0", "macos": "14.0"}
    assert [(p["name"], p["targets"]) for p in manifest["products"]] == [(MODULE, [MODULE])]
    (target,) = manifest["targets"]
    assert target["resources"] == [{"path": "Resources", "rule": {"copy": {}}}]
    (product,) = [d["product"] for d in target["dependencies"]]
    assert product[:2] == ["onnxruntime", "onnxruntime-swift-package-manager"]
    (dependency,) = manifest["dependencies"]
    assert dependency["sourceControl"][0]["requirement"] == {"exact": ["1.24.2"]}
    revision = _dump_package(swift_tools, sample_package(REVISION_PIN), tmp_path / "revision")
    requirement = revision["dependencies"][0]["sourceControl"][0]["requirement"]
    assert requirement == {"revision": [REVISION_PIN.revision]}


# --- what is generated, determinism, description checks -----------------------------------------------------


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    first = render_package(sample_package(), tmp_path / "a")
    second = render_package(sample_package(), tmp_path / "b")
    rel = [p.relative_to(tmp_path / "a") for p in first]
    assert rel == [p.relative_to(tmp_path / "b") for p in second] == sorted(rel)
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a
        assert b"\r" not in a.read_bytes()
    names = {str(p.relative_to(MODULE)) for p in rel}
    per_model = ("Preprocessor", "Preprocessor+Images", "Outputs", "Model")
    expected = {"Package.swift", "README.md"} | {f"{SRC}/FaceEmbedder{k}.swift" for k in per_model}
    expected |= {f"{SRC}/FaceEmbedderOrt.swift", f"{SRC}/FaceEmbedderCoreML.swift", f"{SRC}/OrtSupport.swift"}
    assert expected <= names
    assert f"{SRC}/FaceDetectorOrt.swift" not in names and f"{SRC}/GrayClassifierCoreML.swift" not in names


def test_readme_example_is_short_and_names_real_types() -> None:
    readme = render_files(sample_package())["README.md"]
    (example,) = re.findall(r"```swift\n(.*?)```", readme, re.DOTALL)
    assert len(example.splitlines()) <= 10
    assert "FaceEmbedderCoreML.create()" in example and "outputs.fc1" in example


def test_coreml_provider_call_follows_the_pin() -> None:
    """V2 where the onnxruntime package has it (tag 1.24.1 on), else the generic call V2 forwards to."""
    release = render_files(sample_package())
    support = release[f"{SRC}/OrtSupport.swift"]
    assert "appendCoreMLExecutionProvider(withOptionsV2: providerOptions)" in support
    support = render_files(sample_package(REVISION_PIN))[f"{SRC}/OrtSupport.swift"]
    assert 'appendExecutionProvider("CoreML", providerOptions: providerOptions)' in support
    loader = release[f"{SRC}/SegLiteOrt.swift"]
    assert '"MLComputeUnits": "CPUAndGPU",' in loader and '"ModelFormat": "NeuralNetwork",' in loader
    assert '"ModelCacheDirectory": OrtSupport.coreMLCache(name: cacheName, key: cacheKey),' in loader


def test_only_the_runtimes_used_are_generated() -> None:
    package = sample_package()
    coreml_only = dataclasses.replace(package, models=(package.models[1],))
    files = render_files(coreml_only)
    assert "onnxruntime" not in files["Package.swift"]
    assert f"{SRC}/OrtSupport.swift" not in files and f"{SRC}/CoreMLSupport.swift" in files
    assert not any("OnnxRuntimeBindings" in text for text in files.values())


def test_cache_keys_follow_the_bundle() -> None:
    """A new bundle gives every file a new compiled-model key; the key is in the generated loader."""
    key = cache_key(BUNDLE_VERSION, "face_embedder/fp16.mlpackage")
    assert key != cache_key(BUNDLE_VERSION + "+1", "face_embedder/fp16.mlpackage")
    loader = render_files(sample_package())[f"{SRC}/FaceEmbedderCoreML.swift"]
    assert f'cacheName: "face_embedder.fp16.mlpackage", cacheKey: "{key}"' in loader


def test_description_problems_are_collected() -> None:
    package = sample_package()
    embedder, detector = package.models[:2]
    options = dict(embedder.ort.plans[0].providers[0].options, ModelCacheDirectory="/tmp/x")
    provider = embedder.ort.plans[0].providers[0].model_copy(update={"options": options})
    plan = embedder.ort.plans[0].model_copy(update={"providers": [provider]})
    broken_embedder = dataclasses.replace(
        embedder, ort=dataclasses.replace(embedder.ort, plans=(plan, *embedder.ort.plans[1:]))
    )
    outputs = (*detector.coreml.outputs[:2], dataclasses.replace(detector.coreml.outputs[2], onnx_name="lmz"))
    broken_detector = dataclasses.replace(
        detector,
        coreml=dataclasses.replace(detector.coreml, outputs=outputs, resource="../fp16.mlpackage"),
        preprocessing=dataclasses.replace(detector.preprocessing, std=(1.0, 0.0)),
    )
    for module, problem in (
        ("faceKit", "not an UpperCamelCase Swift identifier"),
        ("Face-Kit", "not an UpperCamelCase Swift identifier"),
        ("Protocol", "Swift keyword"),
        ("Foundation", "Swift keyword or the name of a module it imports"),
        ("Backend", "also the name of a generated type"),
    ):
        broken = dataclasses.replace(package, module=module, models=(broken_embedder, broken_detector))
        with pytest.raises(CodegenError) as caught:
            render_files(broken)
        text = str(caught.value)
        assert problem in text, text
        assert "sets ModelCacheDirectory" in text
        assert "unknown ONNX output 'lmz'" in text
        assert "'../fp16.mlpackage' must be a relative path" in text
        assert "preprocessing.std needs 1 or 3" in text
        assert "ort.input_shape" not in text  # only what is wrong
    with pytest.raises(CodegenError, match=r"deployment_target '14\.0'.*bundle_version is empty"):
        render_files(dataclasses.replace(package, bundle_version=" ", deployment_target="14.0"))


def test_swift_names_and_literals() -> None:
    taken: set[str] = {"names"}
    raw = ("fc1", "box:0", "/model/Conv_1_output_0", "532", "class", "fc1", "names")
    assert [swift_name(n, taken) for n in raw] == [
        "fc1",
        "box0",
        "modelConv1Output0",
        "output532",
        "outputClass",
        "fc12",
        "names2",
    ]
    assert swift_string('a"b\\c\\(d)\n\x01') == '"a\\"b\\\\c\\\\(d)\\n\\u{1}"'
    for value in (0.0431, 123.675, 57.12, 1e-8, 1e20, -0.5):  # the float32 Python computes with, exactly
        literal = swift_float(value)
        parsed = float.fromhex(literal) if "0x" in literal else float(literal)
        assert np.float32(parsed) == np.float32(value), (value, literal)
