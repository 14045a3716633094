// Test driver, compiled with the pure files of the generated sample package (tests/swift_sample): runs the
// generated preprocessing and output helpers on a plain Swift toolchain so the test can compare them with
// Python. Everything goes through stdin and stdout (the program runs in a chroot that sees no host files).
//
// stdin, little-endian:
//   int32 image count, then per image: int32 width, height, bytesPerRow, then height * bytesPerRow RGBA bytes;
//   int32 n, then n float32: an embedding for FaceEmbedderOutputs (L2) and a [1, 3, 4, 5] tensor for the
//   channels-last transposes (n = 128 + 60).
// stdout, float32 little-endian: per image, per model in PREPROCESSORS order, the tensor; then the L2-normalised
//   embedding, the tensor channels-last, and that back channels-first.
import Foundation

let preprocessors: [(String, ([UInt8], Int, Int, Int) throws -> [Float])] = [
    ("face_embedder", { try FaceEmbedderPreprocessor.tensor(rgba: $0, width: $1, height: $2, bytesPerRow: $3) }),
    ("face_detector", { try FaceDetectorPreprocessor.tensor(rgba: $0, width: $1, height: $2, bytesPerRow: $3) }),
    ("gray_classifier", { try GrayClassifierPreprocessor.tensor(rgba: $0, width: $1, height: $2, bytesPerRow: $3) }),
    ("seg_lite", { try SegLitePreprocessor.tensor(rgba: $0, width: $1, height: $2, bytesPerRow: $3) }),
]

let input = [UInt8](FileHandle.standardInput.readDataToEndOfFile())
var position = 0

func int32() -> Int {
    let value = input[position..<(position + 4)].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
    position += 4
    return Int(Int32(bitPattern: value))
}

func floats(_ count: Int) -> [Float] {
    (0..<count).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: int32())) }
}

var output = Data()
func write(_ values: [Float]) {
    for value in values {
        withUnsafeBytes(of: value.bitPattern.littleEndian) { output.append(contentsOf: $0) }
    }
}

for _ in 0..<int32() {
    let (width, height, bytesPerRow) = (int32(), int32(), int32())
    let rgba = Array(input[position..<(position + height * bytesPerRow)])
    position += height * bytesPerRow
    for (_, tensor) in preprocessors {
        write(try tensor(rgba, width, height, bytesPerRow))
    }
}
let extra = floats(int32())
write(try FaceEmbedderOutputs(["fc1": Array(extra[0..<128])]).fc1)
let nchw = Array(extra[128...])
let nhwc = Tensors.toChannelsLast(nchw, channels: 3)
write(nhwc)
write(Tensors.toChannelsFirst(nhwc, channels: 3))
FileHandle.standardOutput.write(output)
