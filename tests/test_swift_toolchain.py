"""tests/swift/toolchain.py: swiftc in a trixie chroot and the Apple/ORT stub modules (DESIGN §7).

Correct code using every stubbed API must typecheck; a wrong argument label, argument type, missing ``try``
or module name must fail and name the file and line; run() must compile and run a plain-Foundation program on
real bytes.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from swift.toolchain import SwiftBuildError, SwiftToolchain, toolchain

ORT_USE = """\
import Foundation
import onnxruntime_objc

final class OrtRunner {
    let env: ORTEnv
    let session: ORTSession

    init(modelPath: String, coreML: Bool) throws {
        env = try ORTEnv(loggingLevel: ORTLoggingLevel.warning)
        let options = try ORTSessionOptions()
        try options.setIntraOpNumThreads(2)
        try options.setGraphOptimizationLevel(.all)
        try options.setLogSeverityLevel(.error)
        try options.addConfigEntry(withKey: "session.load_model_format", value: "ORT")
        if coreML && ORTIsCoreMLExecutionProviderAvailable() {
            try options.appendCoreMLExecutionProvider(withOptionsV2: [
                "MLComputeUnits": "CPUAndNeuralEngine",
                "ModelFormat": "MLProgram",
            ])
        } else if coreML {
            let legacy = ORTCoreMLExecutionProviderOptions()
            legacy.enableOnSubgraphs = true
            legacy.createMLProgram = true
            try options.appendCoreMLExecutionProvider(with: legacy)
        }
        session = try ORTSession(env: env, modelPath: modelPath, sessionOptions: options)
    }

    func run(_ input: [Float], shape: [Int]) throws -> [Float] {
        let data = NSMutableData(bytes: input, length: input.count * MemoryLayout<Float>.stride)
        let value = try ORTValue(
            tensorData: data, elementType: ORTTensorElementDataType.float,
            shape: shape.map { NSNumber(value: $0) })
        let inputName = try session.inputNames()[0]
        let outputName = try session.outputNames()[0]
        let outputs = try session.run(
            withInputs: [inputName: value], outputNames: [outputName], runOptions: try ORTRunOptions())
        guard let output = outputs[outputName] else { return [] }
        let info = try output.tensorTypeAndShapeInfo()
        precondition(info.elementType == .float || info.elementType == .uInt8)
        let count = info.shape.reduce(1) { $0 * $1.intValue }
        let bytes = try output.tensorData()
        var result = [Float](repeating: 0, count: count)
        let raw = UnsafeRawBufferPointer(start: bytes.bytes, count: bytes.length)
        result.withUnsafeMutableBytes { $0.copyBytes(from: raw) }
        return result
    }
}
"""

COREML_USE = """\
import CoreML

final class CoreMLRunner {
    let model: MLModel

    init(url: URL) throws {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = MLComputeUnits.cpuAndNeuralEngine
        let compiled = try MLModel.compileModel(at: url)
        model = try MLModel(contentsOf: compiled, configuration: configuration)
    }

    static func load(url: URL) async throws -> MLModel {
        let compiled = try await MLModel.compileModel(at: url)
        return try await MLModel.load(contentsOf: compiled, configuration: MLModelConfiguration())
    }

    func predict(_ input: [Float]) throws -> [Float] {
        let inputName = model.modelDescription.inputDescriptionsByName.keys.sorted()[0]
        let outputName = model.modelDescription.outputDescriptionsByName.keys.sorted()[0]
        let array = try MLMultiArray(shape: [1, 3, 2, 2], dataType: .float32)
        let pointer = array.dataPointer.bindMemory(to: Float.self, capacity: array.count)
        let strides = array.strides.map { $0.intValue }
        for (i, x) in input.enumerated() where i < array.count { pointer[i * strides[3]] = x }
        array[0] = NSNumber(value: input[0])
        precondition(array.shape.count == 4 && array.dataType == .float32)
        let value = MLFeatureValue(multiArray: array)
        let provider = try MLDictionaryFeatureProvider(dictionary: [inputName: value])
        let first = try model.prediction(from: provider, options: MLPredictionOptions())
        let second = try model.prediction(from: provider)
        let features: MLFeatureProvider = first.featureNames.isEmpty ? second : first
        guard let result = features.featureValue(for: outputName)?.multiArrayValue else { return [] }
        return (0..<result.count).map { result[$0].floatValue }
    }
}
"""

PIXELS_USE = """\
import CoreGraphics
import CoreVideo

func bgraBytes(_ buffer: CVPixelBuffer) -> [UInt8]? {
    let format = CVPixelBufferGetPixelFormatType(buffer)
    guard format == kCVPixelFormatType_32BGRA || format == kCVPixelFormatType_32RGBA
        || format == kCVPixelFormatType_32ARGB else { return nil }
    guard CVPixelBufferLockBaseAddress(buffer, .readOnly) == kCVReturnSuccess else { return nil }
    defer { CVPixelBufferUnlockBaseAddress(buffer, CVPixelBufferLockFlags.readOnly) }
    guard let base = CVPixelBufferGetBaseAddress(buffer) else { return nil }
    let width = CVPixelBufferGetWidth(buffer), height = CVPixelBufferGetHeight(buffer)
    let rowBytes = CVPixelBufferGetBytesPerRow(buffer)
    var out = [UInt8](repeating: 0, count: width * height * 4)
    for y in 0..<height {
        let row = base.advanced(by: y * rowBytes).assumingMemoryBound(to: UInt8.self)
        for x in 0..<(width * 4) { out[y * width * 4 + x] = row[x] }
    }
    return out
}

func rgbaBytes(_ image: CGImage, width: Int, height: Int) -> [UInt8]? {
    precondition(image.width > 0 && image.height > 0)
    var pixels = [UInt8](repeating: 0, count: width * height * 4)
    let drawn = pixels.withUnsafeMutableBytes { raw -> Bool in
        guard let context = CGContext(
            data: raw.baseAddress, width: width, height: height, bitsPerComponent: 8,
            bytesPerRow: width * 4, space: CGColorSpaceCreateDeviceRGB(),
            bitmapInfo: CGImageAlphaInfo.premultipliedLast.rawValue
                | CGBitmapInfo.byteOrder32Big.rawValue
        ) else { return false }
        context.interpolationQuality = CGInterpolationQuality.high
        context.draw(image, in: CGRect(x: 0, y: 0, width: width, height: height))
        return true
    }
    let skip = CGBitmapInfo(rawValue: CGImageAlphaInfo.noneSkipLast.rawValue)
    return drawn && !skip.isEmpty ? pixels : nil
}
"""

SPM_USE = """\
import OnnxRuntimeBindings

func version() -> String { ORTVersion() ?? "unknown" }
"""

MAIN = """\
import Foundation

let input = FileHandle.standardInput.readDataToEndOfFile()
let scale = Float(CommandLine.arguments[1])!
let floats = swapRB([UInt8](input)).map { Float($0) * scale }
var bytes = Data()
for value in floats { withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
FileHandle.standardOutput.write(bytes)
"""

HELPER = """\
/// RGBA -> BGRA, in place of a real preprocessing step.
func swapRB(_ rgba: [UInt8]) -> [UInt8] {
    var out = rgba
    for i in stride(from: 0, to: rgba.count, by: 4) {
        out[i] = rgba[i + 2]
        out[i + 2] = rgba[i]
    }
    return out
}
"""


@pytest.fixture(scope="session")
def swift() -> SwiftToolchain:
    return toolchain()


def write(folder: Path, files: dict[str, str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return [folder / name for name in files]


def correct_sources(folder: Path) -> list[Path]:
    return write(
        folder, {"OrtUse.swift": ORT_USE, "CoreMLUse.swift": COREML_USE, "PixelsUse.swift": PIXELS_USE}
    )


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_correct_use_of_every_stub_typechecks(swift: SwiftToolchain, tmp_path: Path) -> None:
    done = swift.typecheck(correct_sources(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "error:" not in done.stderr


def test_swift_package_module_name_typechecks(swift: SwiftToolchain, tmp_path: Path) -> None:
    done = swift.typecheck(write(tmp_path, {"Spm.swift": SPM_USE}))
    assert done.returncode == 0, done.stderr


MUTATIONS = [
    pytest.param(
        "OrtUse.swift",
        "ORTEnv(loggingLevel: ORTLoggingLevel.warning)",
        "ORTEnv(logLevel: ORTLoggingLevel.warning)",
        "incorrect argument label",
        id="ort-label",
    ),
    pytest.param(
        "OrtUse.swift",
        "appendCoreMLExecutionProvider(withOptionsV2: [",
        "appendCoreMLExecutionProvider(withOptions: [",
        "argument label",
        id="ort-coreml-v2-label",
    ),
    pytest.param(
        "OrtUse.swift",
        "try options.setIntraOpNumThreads(2)",
        "try options.setIntraOpNumThreads(Int(2))",
        "'Int' to expected argument type 'Int32'",
        id="ort-int32",
    ),
    pytest.param(
        "OrtUse.swift",
        "let options = try ORTSessionOptions()",
        "let options = ORTSessionOptions()",
        "can throw but is not marked with 'try'",
        id="ort-missing-try",
    ),
    pytest.param(
        "CoreMLUse.swift",
        "MLMultiArray(shape: [1, 3, 2, 2], dataType: .float32)",
        "MLMultiArray(shape: [1, 3, 2, 2], type: .float32)",
        "argument label",
        id="coreml-label",
    ),
    pytest.param(
        "CoreMLUse.swift",
        "guard let result = features.featureValue(for: outputName)?.multiArrayValue",
        "guard let result = features.featureValue(outputName)?.multiArrayValue",
        "missing argument label",
        id="coreml-feature-value-label",
    ),
    pytest.param(
        "PixelsUse.swift",
        "bitmapInfo: CGImageAlphaInfo.premultipliedLast.rawValue",
        "bitmapInfo: CGImageAlphaInfo.premultipliedLast.rawValue as UInt",
        "'UInt' to expected argument type 'UInt32'",
        id="cgcontext-bitmapinfo-type",
    ),
    pytest.param(
        "PixelsUse.swift",
        "guard let base = CVPixelBufferGetBaseAddress(buffer) else",
        "guard let base = CVPixelBufferGetBaseAddress(pixelBuffer: buffer) else",
        "extraneous argument label",
        id="corevideo-label",
    ),
]


@pytest.mark.parametrize(("name", "good", "bad", "message"), MUTATIONS)
def test_wrong_use_fails_naming_file_and_line(
    swift: SwiftToolchain, tmp_path: Path, name: str, good: str, bad: str, message: str
) -> None:
    sources = correct_sources(tmp_path)
    path = tmp_path / name
    text = path.read_text()
    assert text.count(good) == 1, good
    path.write_text(text.replace(good, bad))
    done = swift.typecheck(sources)
    assert done.returncode != 0
    line = line_of(path.read_text(), bad)
    assert f"{path}:{line}:" in done.stderr, done.stderr
    assert message in done.stderr, done.stderr


def test_wrong_module_name_fails(swift: SwiftToolchain, tmp_path: Path) -> None:
    done = swift.typecheck(
        write(tmp_path, {"Pod.swift": SPM_USE.replace("OnnxRuntimeBindings", "onnxruntime")})
    )
    assert done.returncode != 0
    assert f"{tmp_path / 'Pod.swift'}:1:" in done.stderr and "no such module 'onnxruntime'" in done.stderr


def test_run_executes_a_program_on_stdin_bytes(swift: SwiftToolchain, tmp_path: Path) -> None:
    pixels = bytes([10, 20, 30, 255, 200, 100, 0, 128])
    done = swift.run(
        write(tmp_path, {"main.swift": MAIN, "Helper.swift": HELPER}), args=["0.5"], stdin=pixels
    )
    assert done.returncode == 0, done.stderr.decode()
    assert struct.unpack("<8f", done.stdout) == (15.0, 10.0, 5.0, 127.5, 0.0, 50.0, 100.0, 64.0)


def test_run_reports_compile_errors_with_host_paths(swift: SwiftToolchain, tmp_path: Path) -> None:
    sources = write(tmp_path, {"main.swift": MAIN.replace("swapRB(", "swapBR(")})
    with pytest.raises(
        SwiftBuildError, match=rf"{re.escape(str(tmp_path / 'main.swift'))}:5:14: error: .*swapBR"
    ):
        swift.run(sources, args=["1"])
