"""Static INT8 in QDQ format, calibrated on real images: the format NNAPI/XNNPACK/CoreML EPs consume.

All the work happens in the shared calibration step (see :mod:`packager.quantize.calibrated`),
which already keeps the fully quantized model built from the best range setting.
"""

from __future__ import annotations

import shutil

from packager.errors import StepError
from packager.quantize.calibrated import Calibrated
from packager.quantize.registry import QuantizeContext


def calibrated_of(ctx: QuantizeContext) -> Calibrated:
    if ctx.calibrated is None:
        raise StepError(
            f"quantize[{ctx.spec.name}]", "no calibration data", "add [models.calibration] images"
        )
    return Calibrated(ctx.calibrated)


def quantize_static_qdq(ctx: QuantizeContext) -> dict[str, object]:
    calibrated = calibrated_of(ctx)
    shutil.copyfile(calibrated.int8, ctx.output)
    return {"tool": "onnxruntime.quantization (QDQQuantizer)", **calibrated.details()}
