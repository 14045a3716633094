"""ONNX -> Core ML ML Program through onnx2tf's SavedModel and coremltools 9, and its int8 weights.

coremltools 9 has no ONNX frontend (DESIGN §5.10): :func:`convert_mlpackage` converts the SavedModel that
``targets.android.tflite.convert_float`` writes (input named and laid out as in ONNX, NCHW; outputs
``output_0``, ``output_1``... in ONNX output order) with FP16 compute. coremltools names the outputs after
the TF graph's tensors (``Identity``, ``Identity_1``...); they get the ONNX names back through the
signature's ``output_i`` keys, never through their position in the spec (§5.25).
:func:`compress_int8` quantizes its weights per channel. The checks of a package on Linux are in
:mod:`targets.ios.coreml_check`.

coremltools' progress bars and its console output go to the log at DEBUG. A TF op coremltools has no
converter for (``ResizeBicubic``, made from ONNX bicubic ``Resize``, §5.27) raises
:class:`ConversionError` naming the op and, when it can be found, the ONNX node it came from.

Saves are deterministic: two conversions of one SavedModel give the same bytes. coremltools itself
stamps the conversion date into the metadata and gives each package item a random UUID in
``Manifest.json``; the date is dropped and the UUIDs are replaced by UUIDs derived from the item paths.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from packager.errors import ConversionError, first_line
from packager.validate.coreml_runner import feature_names
from targets.ios.coreml_check import (
    TOOL,
    WEIGHT_THRESHOLD,
    CoreMLMetadata,
    Feature,
    package_mb,
    quiet,
    read_features,
    read_weights,
    target_name,
    weight_problems,
)

log = logging.getLogger(__name__)

DeploymentTarget = Literal["iOS15", "iOS16", "iOS17", "iOS18"]


@dataclass(frozen=True)
class CoreMLConversion:
    """What :func:`convert_mlpackage` wrote."""

    path: Path
    """The ``.mlpackage`` folder."""
    seconds: float
    """Wall time of conversion, renaming and saving."""
    coremltools_version: str
    spec_version: int
    """Core ML specification version (6 = iOS15 ... 9 = iOS18)."""
    deployment_target: str
    input: Feature
    """float32, shape and layout as the ONNX input (NCHW)."""
    outputs: tuple[Feature, ...]
    """float32, in ONNX output order; 3-D and wider ones channels-last, as onnx2tf leaves them."""
    onnx_names: dict[str, str]
    """``{Core ML feature name: ONNX name}`` for the input and every output (see ``feature_names``)."""
    size_mb: float


@dataclass(frozen=True)
class CoreMLCompression:
    """What :func:`compress_int8` wrote."""

    path: Path
    seconds: float
    weight_threshold: int
    quantized: int
    """Weights stored as per-channel int8."""
    kept_float: dict[str, int]
    """Weights left FP16, counted by why (1-D, or at most ``weight_threshold`` elements)."""
    deployment_target: str
    raised_from: str | None
    """The source package's deployment target when int8 raised it: ``constexpr_affine_dequantize``
    needs iOS16, so an iOS15 package comes back as iOS16 and the app must require iOS16."""
    size_mb: float
    source_size_mb: float


# --- conversion -----------------------------------------------------------------------------------


def _signature(saved_model: Path, outputs: int, step: str) -> tuple[str, dict[int, str]]:
    """(TF input placeholder, ``{ONNX output index: TF graph output tensor}``) of ``serving_default``.

    onnx2tf keys the signature outputs ``output_<ONNX index>``; coremltools names the Core ML outputs
    after the graph tensors (``Identity``...). A signature's graph outputs are its structured outputs
    flattened, dict keys sorted (``output_10`` before ``output_2``): pairing the two lists that way is
    TensorFlow's own rule, not a guess from positions. The placeholder can differ from the ONNX input
    name (onnx2tf turns ``input.1`` into ``input_1``).
    """
    import tensorflow as tf

    try:
        signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    except (OSError, ValueError, KeyError) as exc:  # missing folder, unreadable proto, no such signature
        raise ConversionError(
            step, TOOL, f"cannot load the SavedModel {saved_model}: {first_line(exc)}", "rebuild it"
        ) from None
    keys = tf.nest.flatten({key: key for key in signature.structured_outputs})
    graph_names = [t.name.split(":")[0] for t in signature.outputs]
    inputs = list(signature.structured_input_signature[1])
    expected = {f"output_{i}" for i in range(outputs)}
    if set(keys) != expected or len(graph_names) != len(keys) or len(inputs) != 1:
        raise ConversionError(
            step,
            TOOL,
            f"the SavedModel's signature (inputs {', '.join(inputs)}; outputs {', '.join(sorted(keys))}) is "
            f"not onnx2tf's one input and output_0..output_{outputs - 1} for the ONNX model's outputs",
            "convert with targets.android.tflite.convert_float (onnx2tf output_signaturedefs=True)",
        )
    by_index = {int(key.removeprefix("output_")): name for key, name in zip(keys, graph_names, strict=True)}
    return inputs[0], by_index


def _var_names(spec: Any) -> set[str]:
    """Every function input and op output name in an ML Program spec."""
    names: set[str] = set()
    for function in spec.mlProgram.functions.values():
        names.update(i.name for i in function.inputs)
        for block in function.block_specializations.values():
            names.update(o.name for op in block.operations for o in op.outputs)
    return names


def _rename(spec: Any, renames: Mapping[str, str], step: str) -> None:
    """Rename features ``{old: new}`` in place with coremltools' ``rename_feature``, through temporary
    names so that swaps (``Identity`` <-> ``Identity_1``) cannot merge two features."""
    from coremltools.models.utils import rename_feature

    taken = _var_names(spec)
    staged: dict[str, str] = {}
    for i, (old, new) in enumerate(renames.items()):
        temp = f"packager_rename_{i}"
        while temp in taken:
            temp += "_"
        rename_feature(spec, old, temp)
        staged[temp] = new
    clashes = sorted(set(staged.values()) & (_var_names(spec) - set(staged)))
    if clashes:
        raise ConversionError(
            step,
            TOOL,
            f"the ONNX names {', '.join(clashes)} are already taken by tensors inside the Core ML program",
            "rename those outputs in the ONNX model",
        )
    for temp, new in staged.items():
        rename_feature(spec, temp, new)


def _set_metadata(spec: Any, metadata: CoreMLMetadata) -> None:
    described = spec.description.metadata
    # A calendar date would make the same conversion differ from one day to the next (DESIGN §8).
    described.userDefined.pop("com.github.apple.coremltools.conversion_date", None)
    described.author = metadata.author
    described.versionString = metadata.version
    described.shortDescription = metadata.short_description
    if metadata.license is not None:
        described.license = metadata.license
    for key in sorted(metadata.user_defined):  # sorted: the serialized map keeps insertion order
        described.userDefined[key] = metadata.user_defined[key]


def _stable_manifest(package: Path) -> None:
    """Replace the random item identifiers in ``Manifest.json`` by UUIDs derived from the item paths.

    coremltools' ModelPackage library names each item with ``uuid_generate`` and, when reading, treats
    identifiers as opaque keys (it checks only that each entry has path, name, author, description and
    that the path exists), so a stable UUID is as valid as a random one and the bytes repeat.
    """
    manifest_path = package / "Manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entries = manifest.get("itemInfoEntries", {})
    stable = {
        old: str(uuid.uuid5(uuid.NAMESPACE_URL, f"mlpackage:{e['path']}")) for old, e in entries.items()
    }
    manifest["itemInfoEntries"] = {stable[old]: entry for old, entry in entries.items()}
    if manifest.get("rootModelIdentifier") in stable:
        manifest["rootModelIdentifier"] = stable[manifest["rootModelIdentifier"]]
    manifest_path.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")


def _drop_temp_package(mlmodel: Any) -> None:
    """Remove the temporary ``.mlpackage`` that holds an ML Program coremltools made in memory.

    coremltools removes it only at interpreter exit (``atexit``), which a forked step worker never runs,
    and each conversion makes two or three (the converted model, the spec rebuilt around its weights).
    """
    if getattr(mlmodel, "is_temp_package", False):
        shutil.rmtree(mlmodel.package_path, ignore_errors=True)


def _save(mlmodel: Any, out: Path) -> None:
    """Save next to ``out``, make it deterministic, then move it into place (no half-written package);
    ``mlmodel``'s temporary package is removed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}-partial.mlpackage")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with quiet():
            mlmodel.save(str(partial))
    finally:
        _drop_temp_package(mlmodel)
    _stable_manifest(partial)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(partial, out)


_UNSUPPORTED = re.compile(r"Conversion for TF op '(\w+)' not implemented")
_TF_NODE = re.compile(r'^name: "([^"]+)"', re.MULTILINE)


def _onnx_node(tf_node: str, onnx_model: Path) -> tuple[str, str] | None:
    """(name, op type) of the ONNX node a TF node came from, or None.

    onnx2tf puts a node's ONNX name or output name (``:`` -> ``__``, leading ``/`` -> ``wa/``) into the
    TF name scope (``PartitionedCall/model/up/ResizeBicubic`` for the Resize node writing ``up``); the
    longest name found as whole scope components wins.
    """
    import onnx

    from packager.validate.runners import ONNX2TF_OUTPUT_SPELLINGS

    scope = f"/{tf_node}/"
    best: tuple[int, str, str] | None = None
    for node in onnx.load(str(onnx_model), load_external_data=False).graph.node:
        for candidate in (node.name, *node.output):
            spelled = {spell(candidate) for spell in ONNX2TF_OUTPUT_SPELLINGS} if candidate else set()
            inside = any(f"/{s.strip('/')}/" in scope for s in spelled if s.strip("/"))
            if inside and (best is None or len(candidate) > best[0]):
                best = (len(candidate), node.name or candidate, node.op_type)
    return (best[1], best[2]) if best else None


_ONNX_SOURCES: dict[str, tuple[str, dict[str, bytes]]] = {"ResizeBicubic": ("Resize", {"mode": b"cubic"})}
"""TF ops coremltools lacks -> the ONNX op (and attributes) onnx2tf makes them from (DESIGN §5 pitfall 27),
for when onnx2tf's TF name scope does not carry the ONNX node's name."""


def _only_source(tf_op: str, onnx_model: Path) -> tuple[str, str] | None:
    """(name, op type) of the one ONNX node ``tf_op`` can come from, or None when not exactly one."""
    import onnx

    if tf_op not in _ONNX_SOURCES:
        return None
    op_type, attributes = _ONNX_SOURCES[tf_op]
    nodes = [
        node
        for node in onnx.load(str(onnx_model), load_external_data=False).graph.node
        if node.op_type == op_type
        and all(any(a.name == k and a.s == v for a in node.attribute) for k, v in attributes.items())
    ]
    return (nodes[0].name or nodes[0].output[0], op_type) if len(nodes) == 1 else None


def _failure(exc: Exception, onnx_model: Path | None, step: str) -> ConversionError:
    """One-line :class:`ConversionError` for a ``ct.convert`` failure, naming the op when it is one."""
    import coremltools as ct

    text = str(exc)
    op = _UNSUPPORTED.search(text)
    tf_node = _TF_NODE.search(text)
    found = _onnx_node(tf_node.group(1), onnx_model) if tf_node and onnx_model else None
    if found is None and op is not None and onnx_model is not None:
        found = _only_source(op.group(1), onnx_model)
    if op is None:
        problem = f"{type(exc).__name__}: {first_line(exc)}"
        fix = "report the model to coremltools (the build log has its output)"
    else:
        source = f"ONNX {found[1]} node {found[0]!r}" if found else "an ONNX op onnx2tf turned into it"
        problem = (
            f"TF op {op.group(1)} (made from {source}) is not implemented in coremltools {ct.__version__}"
        )
        fix = f"replace the {found[1] if found else op.group(1)} op in the model"
    return ConversionError(
        step,
        TOOL,
        problem,
        f"{fix}, or drop coreml from [ios].runtimes (or make it optional) so the bundle ships without it",
        node=found[0] if found else (tf_node.group(1) if tf_node else None),
    )


def convert_mlpackage(
    saved_model: Path,
    out: Path,
    *,
    input_name: str,
    input_shape: tuple[int, ...],
    output_names: Sequence[str],
    minimum_deployment_target: DeploymentTarget,
    metadata: CoreMLMetadata,
    onnx_model: Path | None = None,
) -> CoreMLConversion:
    """Convert onnx2tf's ``saved_model`` into the ML Program ``out`` (a ``.mlpackage`` folder).

    FP16 weights and compute, float32 I/O. The input is the ONNX input (``input_name``, fixed
    ``input_shape``, NCHW); the outputs are ``output_names`` (the ONNX outputs, in ONNX order), all under
    their :func:`feature_names`. ``onnx_model`` (the .onnx the SavedModel was made from) lets a failure
    name the ONNX node. Raises :class:`ConversionError` naming the op coremltools cannot convert.
    """
    import coremltools as ct

    step = "coreml fp16"
    start = time.perf_counter()
    tf_input, tf_outputs = _signature(saved_model, len(output_names), step)
    try:
        with quiet():
            mlmodel = ct.convert(
                str(saved_model),
                source="tensorflow",
                convert_to="mlprogram",
                compute_precision=ct.precision.FLOAT16,
                minimum_deployment_target=ct.target[minimum_deployment_target],
                # float32 I/O pinned: for iOS16+ coremltools would otherwise make the features FP16,
                # and every target feeds and reads float32 (the app converts nothing).
                inputs=[ct.TensorType(name=tf_input, shape=input_shape, dtype=np.float32)],
                outputs=[ct.TensorType(name=tf_outputs[i], dtype=np.float32) for i in sorted(tf_outputs)],
            )
    except Exception as exc:  # coremltools raises NotImplementedError, ValueError, TypeError...
        raise _failure(exc, onnx_model, step) from None
    spec = mlmodel.get_spec()
    converted = [o.name for o in spec.description.output]
    if sorted(converted) != sorted(tf_outputs.values()):
        raise ConversionError(
            step,
            TOOL,
            f"its outputs ({', '.join(converted)}) are not the SavedModel's "
            f"({', '.join(tf_outputs.values())})",
            "report the model; drop coreml from [ios].runtimes until then",
        )
    inputs = {input_name: feature_names([input_name])[input_name]}
    outputs = feature_names(output_names)
    if inputs[input_name] in outputs.values():
        raise ConversionError(
            step,
            TOOL,
            f"input {input_name!r} and an output both become Core ML feature {inputs[input_name]!r}",
            "rename one of them in the ONNX model",
        )
    renames = {tf_input: inputs[input_name]}
    renames.update({tf_outputs[i]: outputs[name] for i, name in enumerate(output_names)})
    _rename(spec, {old: new for old, new in renames.items() if old != new}, step)
    _set_metadata(spec, metadata)
    try:  # the rebuilt model reads its weights from the converted model's temporary package
        _save(ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True), out)
    finally:
        _drop_temp_package(mlmodel)
    seconds = time.perf_counter() - start
    written = {f.name: f for f in read_features(spec.description.output)}
    log.info("coremltools conversion of %s took %.1f s", saved_model, seconds)
    return CoreMLConversion(
        out,
        seconds,
        ct.__version__,
        spec.specificationVersion,
        target_name(spec.specificationVersion),
        read_features(spec.description.input)[0],
        tuple(written[outputs[name]] for name in output_names),
        {feature: name for name, feature in {**inputs, **outputs}.items()},
        package_mb(out),
    )


def compress_int8(
    mlpackage: Path, out: Path, *, weight_threshold: int = WEIGHT_THRESHOLD
) -> CoreMLCompression:
    """Per-channel symmetric int8 weights (``linear_quantize_weights``) for every weight of more than
    ``weight_threshold`` elements (see :data:`WEIGHT_THRESHOLD`); activations stay FP16, so the model
    computes as before on dequantized weights and only the file (and memory) shrinks.

    Weights left FP16 are counted with the reason in the result and logged. Raises
    :class:`ConversionError` when coremltools fails.
    """
    import coremltools as ct
    import coremltools.optimize.coreml as cto

    start = time.perf_counter()
    source = ct.models.MLModel(str(mlpackage), skip_model_load=True)
    config = cto.OptimizationConfig(
        global_config=cto.OpLinearQuantizerConfig(
            mode="linear_symmetric",
            dtype="int8",
            granularity="per_channel",
            weight_threshold=weight_threshold,
        )
    )
    try:
        with quiet():
            quantized = cto.linear_quantize_weights(source, config)
    except Exception as exc:  # coremltools raises ValueError, NotImplementedError...
        raise ConversionError(
            "coreml int8",
            TOOL,
            f"{type(exc).__name__}: {first_line(exc)}",
            "ship the FP16 Core ML package only (drop its int8 variant)",
        ) from None
    spec = quantized.get_spec()
    # The quantizer copies the source's metadata: a package not made here may carry coremltools' date.
    spec.description.metadata.userDefined.pop("com.github.apple.coremltools.conversion_date", None)
    try:
        _save(ct.models.MLModel(spec, weights_dir=quantized.weights_dir, skip_model_load=True), out)
    finally:
        _drop_temp_package(quantized)
    seconds = time.perf_counter() - start
    weights, _ = read_weights(ct.models.MLModel(str(out), skip_model_load=True))
    kept, skipped = weight_problems(weights, "int8", weight_threshold)
    before = target_name(source.get_spec().specificationVersion)
    after = target_name(spec.specificationVersion)
    quantized_count = sum(w.compressed for w in weights)
    log.info("int8 %s: %d weights quantized, kept FP16: %s", out.name, quantized_count, kept or "none")
    if skipped:  # above the threshold and still float: coremltools skipped it for a reason of its own
        log.warning("int8 %s: %s", out.name, "; ".join(skipped))
    if before != after:
        log.warning(
            "int8 %s needs %s (its FP16 source %s): quantized weights need iOS16", out.name, after, before
        )
    return CoreMLCompression(
        out,
        seconds,
        weight_threshold,
        quantized_count,
        kept,
        after,
        before if before != after else None,
        package_mb(out),
        package_mb(mlpackage),
    )
