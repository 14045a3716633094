"""The one onnx2tf run both TensorFlow-based platforms build on (DESIGN §5 pitfall 18).

``saved-model[<model>]`` converts the prepared FP32 model once: a TF SavedModel (the iOS target
hands it to coremltools) plus the float32 and float16 ``.tflite`` files (the Android target ships
them). Both targets ask for this step with the same definition, so the core plans and caches it once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from packager.results import IOInfo
from packager.steps import Step, StepContext
from packager.target import ArtifactRecord, ArtifactRecords, ModelProducts

if TYPE_CHECKING:
    from targets.android.tflite import TensorQuantization

TOOLS = ("packager", "onnx", "onnx2tf", "tensorflow", "tf-keras", "onnxsim", "ai-edge-litert", "numpy")


def saved_model_step(upstream: ModelProducts) -> Step:
    """Outputs ``saved_model/``, ``fp32.tflite``, ``fp16.tflite`` (input in the ONNX model's layout).

    Not required: a model onnx2tf cannot convert fails the artifacts made from it, with the op named.
    """
    return Step(
        f"saved-model[{upstream.spec.name}]",
        "convert",
        run=_run,
        inputs={"model": upstream.prepared},
        params={"layout": "NCHW"},
        tools=TOOLS,
        required=False,
    )


def _run(ctx: StepContext) -> dict[str, object]:
    from targets.android.tflite import convert_float

    conversion = convert_float(ctx.inputs["model"], ctx.out, layout="NCHW")
    derive_fingerprint_uuid(conversion.saved_model)
    records = {}
    for precision, path in (("fp32", conversion.float32), ("fp16", conversion.float16)):
        path.rename(ctx.out / f"{precision}.tflite")
        inputs, outputs = tflite_io(ctx.out / f"{precision}.tflite")
        records[f"{precision}.tflite"] = ArtifactRecord(
            inputs=inputs,
            outputs=outputs,
            details={"converter": "onnx2tf", "seconds": round(conversion.seconds, 1)},
        )
    return ArtifactRecords(artifacts=records).model_dump(mode="json")


def derive_fingerprint_uuid(saved_model: Path) -> None:
    """Replace the random ``uuid`` TensorFlow writes into ``fingerprint.pb`` with one derived from the
    fingerprint's other fields, so one model converts to the same SavedModel bytes every time.

    Measured (TF 2.19, two conversions of one model): every file of the SavedModel is the same but
    ``fingerprint.pb``, whose hashes (checksum, graph, signatures, object graph, checkpoint) agree and
    whose ``uuid`` differs: "An UUID for the model, chosen at random, not related to the hashes"
    (tensorflow/core/protobuf/fingerprint.proto); ``tf.saved_model.load`` reads the fingerprint only to
    log metrics. The SavedModel does not ship, but the Core ML conversion and its stand-in validation are
    keyed by its content: with a random id, two builds of one model never share those cache entries.
    """
    from tensorflow.core.protobuf.fingerprint_pb2 import FingerprintDef

    path = saved_model / "fingerprint.pb"
    if not path.is_file():
        return  # TF versions before 2.12 write none
    fingerprint = FingerprintDef.FromString(path.read_bytes())
    fingerprint.ClearField("uuid")
    digest = hashlib.sha256(fingerprint.SerializeToString(deterministic=True)).digest()
    fingerprint.uuid = str(int.from_bytes(digest[:8], "little"))  # TF writes a decimal uint64
    path.write_bytes(fingerprint.SerializeToString(deterministic=True))


def tflite_io(path: Path) -> tuple[list[IOInfo], list[IOInfo]]:
    """A .tflite's signature tensors as the app feeds and reads them; ``scale``/``zero_point`` only on
    integer tensors (a float tensor the model quantizes inside needs nothing from the app)."""
    from targets.android.tflite import io_quantization

    def info(t: TensorQuantization) -> IOInfo:
        quantized = t.dtype in ("int8", "uint8", "int16")
        return IOInfo(
            name=t.name,
            dtype=t.dtype,
            shape=list(t.shape),
            scale=t.scale if quantized else None,
            zero_point=t.zero_point if quantized else None,
        )

    inputs, outputs = io_quantization(path)
    return [info(t) for t in inputs], [info(t) for t in outputs]
