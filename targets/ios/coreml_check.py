"""Checks of a Core ML package on Linux, and the readers the conversion shares.

:func:`inspect_mlpackage` checks a package (type, I/O, weight dtypes) from its spec and weight file alone,
which works without macOS. Its readers (features, weights, metadata, deployment target, size) serve
:mod:`targets.ios.coreml`, which converts and compresses, too.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from packager.errors import ConversionError, first_line
from packager.validate.coreml_runner import feature_names
from packager.validate.runners import _channels_last

log = logging.getLogger(__name__)

TOOL = "coremltools"
WeightDtype = Literal["float16", "int8"]
WEIGHT_THRESHOLD = 512
"""Weights with more elements than this are quantized by :func:`targets.ios.coreml.compress_int8`.

coremltools' default (2048) silently leaves real layers in FP16 (DESIGN §5.23): a 1x1 conv 32->64, a
3x3 depthwise conv of up to 227 channels, a 10-class head. Below it lies only what int8 cannot shrink:
each weight in ``weight.bin`` is a blob with a 64-byte header, padded to 64 bytes, and per-channel int8
adds two blobs (an FP16 scale and an int8 zero point per output channel, for iOS16/17), so a weight of
``n`` elements saves about ``n - 256`` bytes (measured: blob sizes sum to the file size exactly). At 512
every quantized weight saves at least 256 bytes, and what stays FP16 is RGB stem convs
(3x3x3x16 = 432) and small depthwise convs, the layers most sensitive to int8 and a few hundred bytes
each. 1-D tensors (biases, norm scales) coremltools never quantizes, whatever the threshold.
Measured on SFace (FP16 19.36 MB): 27 weights int8 at 512 (one 432-weight conv kept) against 22 at
2048; the package is 9.78 MB either way, so the gain is layers not silently left FP16, not bytes.
"""


@dataclass(frozen=True)
class Feature:
    """One input or output of a package, from its spec."""

    name: str
    """The Core ML feature name (``feature_names`` of the ONNX name)."""
    dtype: str
    """``float32``, ``float16``, ``int32``, ``double``."""
    shape: tuple[int, ...]


@dataclass(frozen=True)
class CoreMLMetadata:
    """What Xcode shows for the model and what the app can read from ``MLModel.modelDescription``."""

    author: str
    version: str
    short_description: str
    license: str | None = None
    user_defined: Mapping[str, str] = field(default_factory=dict)
    """Facts the app needs (preprocessing, output kind), as strings: Core ML stores ``[String: String]``."""


@dataclass(frozen=True)
class MLPackageFacts:
    """What :func:`inspect_mlpackage` read from a package's spec and weight file (no macOS needed)."""

    path: Path
    spec_version: int
    model_type: str
    """The spec's model kind: ``mlProgram`` (``neuralNetwork`` for the older format)."""
    deployment_target: str
    """The oldest iOS that runs it, from the spec version (coremltools' ``ct.target`` table)."""
    inputs: tuple[Feature, ...]
    outputs: tuple[Feature, ...]
    channels_last_outputs: tuple[str, ...]
    """ONNX names of the outputs whose shape is the channels-last form of the ONNX one (onnx2tf's)."""
    weight_dtypes: dict[str, int]
    """Weights by storage dtype; a quantized weight counts once, under its data's dtype."""
    quantized: int
    kept_float: dict[str, int]
    """FP16 weights of an int8 package, by why they were not quantized; empty for an FP16 package."""
    weight_bytes: int
    """Bytes of every weight as stored, quantization scales and zero points included."""
    size_mb: float
    """The package folder on disk, in 10^6 bytes."""
    metadata: CoreMLMetadata
    """As stored; coremltools' own ``com.github.apple.coremltools.*`` keys are left out of it."""
    converter: str
    """coremltools' record of itself and the source framework ("coremltools 9.0 from tensorflow==2.19.0")."""


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """coremltools' tqdm bars and prints go to the log at DEBUG instead of the user's console."""
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            yield
    finally:
        log.debug("coremltools output:\n%s", chatter.getvalue().strip())


# --- weights and inspection -----------------------------------------------------------------------

MAX_LISTED = 10
"""Problems an inspection error lists (a wrong dtype can concern every weight of a large model)."""
_STORED = frozenset({"float16", "float32", "int8", "uint8"})
"""Dtypes coremltools stores in ``weight.bin`` (``should_use_weight_file``; iOS18 adds int types for
indices, which are not weights); with 10 elements or more. Smaller constants are op parameters."""
_COMPRESSED_DATA = frozenset({"quantized_data", "data", "indices"})
"""The argument of ``constexpr_affine_dequantize`` (iOS16), ``constexpr_blockwise_shift_scale`` (iOS18)
and ``constexpr_lut_to_dense`` holding the compressed weight; its other arguments are its parameters."""


@dataclass(frozen=True)
class Weight:
    name: str
    dtype: str
    shape: tuple[int, ...]
    compressed: bool
    """Stored through a ``constexpr_*`` op (quantized or palettized), not as a plain ``const``."""


def read_weights(mlmodel: Any) -> tuple[list[Weight], int]:
    """(the program's weights, their bytes with quantization parameters), from
    ``ct.optimize.coreml.get_weights_metadata``, which reads the weight file without macOS."""
    import coremltools.optimize.coreml as cto

    with quiet():
        metadata = cto.get_weights_metadata(mlmodel, weight_threshold=0)
    weights, nbytes = [], 0
    for name, meta in metadata.items():
        value = meta.val
        if value.size < 10 or value.dtype.name not in _STORED:
            continue
        nbytes += value.nbytes
        roles = {
            param
            for child in meta.child_ops
            if child.op_type.startswith("constexpr_")
            for param, const in child.params_name_mapping.items()
            if const == name
        }
        if roles and not roles & _COMPRESSED_DATA:
            continue  # a scale or zero point of a quantized weight
        weights.append(Weight(name, value.dtype.name, tuple(value.shape), bool(roles)))
    return weights, nbytes


def weight_problems(
    weights: Sequence[Weight], expected: WeightDtype, threshold: int
) -> tuple[dict[str, int], list[str]]:
    """(FP16 weights kept by reason, problems) for a package meant to have ``expected`` weights.

    int8: a float weight is expected only where coremltools' quantizer skips it by rule (1-D, or at
    most ``threshold`` elements); any other float weight is a problem. float16: any compressed weight is.
    float32 weights are a problem in both (the conversion did not use FP16 precision).
    """
    kept: dict[str, int] = {}
    problems = []
    for w in weights:
        where = f"weight {w.name} {list(w.shape)}"
        size = math.prod(w.shape)
        if w.dtype == "float32":
            problems.append(f"{where} is float32")
        elif expected == "float16" and w.compressed:
            problems.append(f"{where} is {w.dtype}, expected float16")
        elif expected == "int8" and w.compressed and w.dtype != "int8":
            problems.append(f"{where} is {w.dtype}, expected int8")
        elif expected == "int8" and not w.compressed:
            if len(w.shape) <= 1:
                reason = "1-D (coremltools never quantizes these)"
            elif size <= threshold:
                reason = f"at most {threshold} elements (weight_threshold)"
            else:
                problems.append(f"{where} ({size} elements) is {w.dtype}, above weight_threshold {threshold}")
                continue
            kept[reason] = kept.get(reason, 0) + 1
    return dict(sorted(kept.items())), problems


def _io_problems(
    kind: str, actual: Sequence[Feature], expected: Mapping[str, tuple[int, ...]], names: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """(problems, ONNX names of channels-last outputs) comparing features with ``expected`` ONNX shapes;
    ``names`` maps ONNX names to feature names. Only outputs may be the channels-last form (onnx2tf)."""
    by_name = {f.name: f for f in actual}
    problems, transposed = [], []
    for onnx_name, shape in expected.items():
        feature = names[onnx_name]
        shown = onnx_name if feature == onnx_name else f"{onnx_name} (Core ML {feature})"
        found = by_name.get(feature)
        if found is None:
            problems.append(f"no {kind} {shown}")
            continue
        if found.dtype != "float32":
            problems.append(f"{kind} {shown} is {found.dtype}, expected float32")
        if found.shape != tuple(shape):
            if kind == "output" and len(shape) >= 3 and found.shape == _channels_last(shape):
                transposed.append(onnx_name)
            else:
                problems.append(f"{kind} {shown} is {list(found.shape)}, expected {list(shape)}")
    extra = sorted(set(by_name) - set(names.values()))
    if extra:
        problems.append(f"unexpected {kind} {', '.join(extra)}")
    return problems, transposed


def read_features(described: Any) -> tuple[Feature, ...]:
    from coremltools.proto import FeatureTypes_pb2

    array = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType
    return tuple(
        Feature(
            f.name, array.Name(f.type.multiArrayType.dataType).lower(), tuple(f.type.multiArrayType.shape)
        )
        for f in described
    )


def target_name(spec_version: int) -> str:
    import coremltools as ct

    try:
        return ct.target(spec_version).name
    except ValueError:  # older than iOS13, or newer than this coremltools knows
        return f"specification {spec_version}"


def _read_metadata(spec: Any) -> tuple[CoreMLMetadata, str]:
    described = spec.description.metadata
    own = "com.github.apple.coremltools."
    user = {k: v for k, v in described.userDefined.items() if not k.startswith(own)}
    tool = described.userDefined.get(own + "version", "?")
    source = described.userDefined.get(own + "source", "?")
    metadata = CoreMLMetadata(
        described.author,
        described.versionString,
        described.shortDescription,
        described.license or None,
        dict(sorted(user.items())),
    )
    return metadata, f"coremltools {tool} from {source}"


def package_mb(path: Path) -> float:
    """Size of a package folder (every file in it) in 10^6 bytes."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def inspect_mlpackage(
    path: Path,
    *,
    expected_inputs: Mapping[str, tuple[int, ...]],
    expected_outputs: Mapping[str, tuple[int, ...]],
    expected_weight_dtype: WeightDtype,
    weight_threshold: int = WEIGHT_THRESHOLD,
) -> MLPackageFacts:
    """Check a package without running it: an ML Program; float32 features named after the ONNX ones
    (``expected_*``: ``{ONNX name: ONNX shape}``; an output may be the channels-last form, as onnx2tf
    leaves it, and is listed in ``channels_last_outputs``); no float32 weight; for ``float16`` no
    quantized weight; for ``int8`` no float weight but those the quantizer skips by rule (1-D, or at
    most ``weight_threshold`` elements, counted in ``kept_float``).

    Raises :class:`ConversionError` listing every problem found.
    """
    import coremltools as ct

    step = f"inspect {path.name}"
    try:
        mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
    except Exception as exc:  # coremltools raises several types for a missing or broken package
        raise ConversionError(
            step, TOOL, f"cannot read {path.name}: {first_line(exc)}", "rebuild it"
        ) from None
    spec = mlmodel.get_spec()
    model_type = spec.WhichOneof("Type") or "empty"
    problems = [] if model_type == "mlProgram" else [f"it is a {model_type} model, not an ML Program"]
    inputs, outputs = read_features(spec.description.input), read_features(spec.description.output)
    input_names = {name: feature_names([name])[name] for name in expected_inputs}
    problems += _io_problems("input", inputs, expected_inputs, input_names)[0]
    output_problems, transposed = _io_problems(
        "output", outputs, expected_outputs, feature_names(list(expected_outputs))
    )
    weights, nbytes = read_weights(mlmodel) if model_type == "mlProgram" else ([], 0)
    kept, dtype_problems = weight_problems(weights, expected_weight_dtype, weight_threshold)
    problems += output_problems + dtype_problems
    if problems:
        if len(problems) > MAX_LISTED:
            problems = [*problems[:MAX_LISTED], f"and {len(problems) - MAX_LISTED} more"]
        raise ConversionError(
            step,
            "onnx2tf+coremltools",  # a wrong output can come from either (DESIGN §5.24)
            f"{path.name} is not the {expected_weight_dtype} ML Program of the ONNX model: "
            + "; ".join(problems),
            "rebuild it; a wrong output name or shape means the conversion mapped outputs wrongly (report "
            "the model), a float weight in an int8 package means lowering weight_threshold",
        )
    dtypes: dict[str, int] = {}
    for w in weights:
        dtypes[w.dtype] = dtypes.get(w.dtype, 0) + 1
    metadata, converter = _read_metadata(spec)
    return MLPackageFacts(
        path,
        spec.specificationVersion,
        model_type,
        target_name(spec.specificationVersion),
        inputs,
        outputs,
        tuple(transposed),
        dict(sorted(dtypes.items())),
        sum(w.compressed for w in weights),
        kept,
        nbytes,
        package_mb(path),
        metadata,
        converter,
    )
