// Test driver, compiled with the generated sample module (tests/kotlin/sample.py): runs the generated
// preprocessing and TFLite tensor encoding on a plain JVM so the test can compare them with Python.
//
// Usage: PreprocessMain <out dir> <image.argb>...
//   image.argb = int32 LE width, height, then width*height ARGB pixels (Bitmap.getPixels order).
//   Writes <out dir>/<image stem>.<model>.f32 (float32 LE) per image and model, and for
//   <out dir>/tensorio.f32 (if present, 60 floats in NCHW [1, 3, 4, 5]) the int8/uint8 encodings
//   (tensorio.int8.bin, tensorio.uint8.bin) and their decodings (tensorio.int8.f32, tensorio.uint8.f32).
package com.example.faceid

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import org.tensorflow.lite.DataType

private val PREPROCESSORS: Map<String, (IntArray, Int, Int) -> FloatArray> = mapOf(
    "face_embedder" to { p, w, h -> FaceEmbedderPreprocessor.tensor(p, w, h) },
    "face_detector" to { p, w, h -> FaceDetectorPreprocessor.tensor(p, w, h) },
    "gray_classifier" to { p, w, h -> GrayClassifierPreprocessor.tensor(p, w, h) },
    "seg_lite" to { p, w, h -> SegLitePreprocessor.tensor(p, w, h) },
)

private fun floats(file: File): FloatArray {
    val buffer = ByteBuffer.wrap(file.readBytes()).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
    return FloatArray(buffer.remaining()).also { buffer.get(it) }
}

private fun write(file: File, values: FloatArray) {
    val bytes = ByteBuffer.allocate(values.size * 4).order(ByteOrder.LITTLE_ENDIAN)
    bytes.asFloatBuffer().put(values)
    file.writeBytes(bytes.array())
}

private fun tensorIo(out: File) {
    val input = File(out, "tensorio.f32")
    if (!input.exists()) return
    val values = floats(input)
    for ((type, zero) in listOf(DataType.INT8 to -3, DataType.UINT8 to 120)) {
        val io = TensorIo("x", "x", type, intArrayOf(1, 4, 5, 3), 0.0431f, zero, channelsLast = true)
        val encoded = io.encode(values)
        val bytes = ByteArray(encoded.remaining()).also { encoded.get(it) }
        val stem = type.name.lowercase()
        File(out, "tensorio.$stem.bin").writeBytes(bytes)
        write(File(out, "tensorio.$stem.f32"), io.decode(ByteBuffer.wrap(bytes)))
    }
}

fun main(args: Array<String>) {
    val out = File(args[0])
    for (path in args.drop(1)) {
        val image = File(path)
        val data = ByteBuffer.wrap(image.readBytes()).order(ByteOrder.LITTLE_ENDIAN)
        val width = data.int
        val height = data.int
        val argb = IntArray(width * height) { data.int }
        for ((model, tensor) in PREPROCESSORS) {
            write(File(out, "${image.nameWithoutExtension}.$model.f32"), tensor(argb, width, height))
        }
    }
    tensorIo(out)
}
