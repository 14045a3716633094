"""The Android module's generated files, made from the bundle's manifest (never typed by hand).

Every asset name, tensor name, shape and quantization parameter comes from the manifest's shipped
artifacts; the preprocessing and output kinds come from the same config the host validation used.
Besides the Kotlin and Gradle files (:mod:`targets.android.codegen`), this writes into ``ort/`` (outside
the assets, so not into the APK) one session config JSON per .ort, the options the generated loaders
use, for teams that write their own, and the merged ``required_operators.config`` of every .ort,
which a reduced ORT build takes (``build.py --include_ops_by_config``).
"""

from __future__ import annotations

from pathlib import Path

from packager.config import ModelSpec
from packager.manifest import ManifestArtifact, ManifestContent
from packager.results import IOInfo
from packager.target import SourceContext
from targets.android.codegen import (
    AndroidModule,
    ModelLoader,
    OrtArtifact,
    Preprocessing,
    TfliteArtifact,
    TfliteFile,
    TfliteOutput,
    TfliteTensor,
    render_module,
)
from targets.android.config import AndroidSpec
from targets.android.plan import PLATFORM, module_name
from targets.loaders import output_infos
from targets.ort_mobile.ep_config import EpConfig
from targets.ort_mobile.ort_format import ANDROID_RUNTIME
from targets.ort_mobile.session_files import write_session_configs


def _asset(artifact: ManifestArtifact, module: str) -> str:
    """The artifact's path under ``src/main/assets``."""
    return artifact.path.split(f"{PLATFORM}/{module}/src/main/assets/", 1)[1]


def _tensor(io: IOInfo) -> TfliteTensor:
    return TfliteTensor(
        name=io.name,
        shape=tuple(int(d) for d in io.shape),
        dtype=io.dtype,  # type: ignore[arg-type]
        scale=io.scale or 0.0,
        zero_point=io.zero_point or 0,
    )


def _tflite_file(artifact: ManifestArtifact, module: str, onnx_outputs: list[str]) -> TfliteFile:
    """onnx2tf names the signature outputs after the ONNX outputs (matched by name, never by position,
    DESIGN pitfall 25); one it renamed would be a conversion the validation already failed."""
    outputs = []
    for io in artifact.outputs:
        if io.name not in onnx_outputs:
            raise ValueError(f"{artifact.path}: signature output {io.name!r} is not an ONNX output")
        outputs.append(TfliteOutput(**vars(_tensor(io)), onnx_name=io.name))
    return TfliteFile(
        asset=_asset(artifact, module),
        precision=artifact.precision,
        input=_tensor(artifact.inputs[0]),
        outputs=tuple(outputs),
    )


def _loader(spec: ModelSpec, table: AndroidSpec, module: str, manifest: ManifestContent) -> ModelLoader:
    model = next(m for m in manifest.models if m.name == spec.name)
    outputs = output_infos(spec, model.outputs)
    mine = [a for a in manifest.artifacts if a.platform == PLATFORM and a.model == spec.name]
    ort = None
    orts = {a.precision: a for a in mine if a.format == "ort"}
    if orts:
        quantized = next((a for a in orts.values() if a.variant != "fp32"), None)
        fp32 = next(a for a in mine if a.format == "ort" and a.variant == "fp32")
        primary = quantized or fp32
        config = EpConfig.model_validate(primary.validation.details["session_config"])
        ort = OrtArtifact(
            asset=_asset(primary, module),
            precision=primary.precision,
            input_name=model.inputs[0].name,
            input_shape=tuple(int(d) for d in model.inputs[0].shape),
            plans=tuple(config.plans),
            fallback_asset=_asset(fp32, module) if quantized else None,
        )
    tflite = None
    tflites = {a.precision: a for a in mine if a.format == "tflite"}
    if tflites:
        names = [o.name for o in model.outputs]
        # Every shipped file is in the chain, none only taking space: the GPU delegate runs FP16 best,
        # XNNPACK and NNAPI INT8; FP32 is what every accelerator and the plain CPU can run.
        preference = (
            ("fp16", "fp32", "int8", "int8-dynamic")
            if table.tflite_delegate == "gpu"
            else ("int8", "int8-dynamic", "fp16", "fp32")
        )
        order = [p for p in preference if p in tflites]
        primary_file = _tflite_file(tflites[order[0]], module, names)
        fallbacks = tuple(_tflite_file(tflites[p], module, names) for p in order[1:])
        tflite = TfliteArtifact(primary=primary_file, fallbacks=fallbacks, delegate=table.tflite_delegate)
    return ModelLoader(
        name=spec.name,
        preprocessing=Preprocessing.from_input_spec(spec.input),
        outputs=outputs,
        ort=ort,
        tflite=tflite,
    )


def android_module(context: SourceContext) -> AndroidModule:
    """The module description of this bundle: one loader per model and shipped runtime."""
    table = context.table
    assert isinstance(table, AndroidSpec)
    module = module_name(context.config.project.name, table)
    return AndroidModule(
        package=table.package,
        module=module,
        models=tuple(_loader(spec, table, module, context.manifest) for spec in context.config.models),
        ort_version=ANDROID_RUNTIME.reference,
        threads=table.threads,
    )


def generate(context: SourceContext) -> list[Path]:
    """Write the module's Kotlin, Gradle and README files, the session configs and the merged
    required-operators config; returns every file written."""
    description = android_module(context)
    module_root = context.root / PLATFORM
    written = render_module(description, module_root)
    ort_artifacts = [a for a in context.manifest.artifacts if a.platform == PLATFORM and a.format == "ort"]
    written += write_session_configs(
        ((_asset(a, description.module), a) for a in ort_artifacts), module_root / description.module / "ort"
    )
    if ort_artifacts:
        written.append(_required_operators(ort_artifacts, module_root / description.module))
    return written


def _required_operators(artifacts: list[ManifestArtifact], module_root: Path) -> Path:
    """One ``domain;opset;op,op`` line per domain and opset over every .ort (ORT's config format)."""
    ops: dict[tuple[str, int], set[str]] = {}
    for artifact in artifacts:
        ort_format = artifact.validation.details["ort_format"]
        assert isinstance(ort_format, dict)
        for entry in ort_format["required_operators"]:
            ops.setdefault((entry["domain"], int(entry["opset"])), set()).update(entry["ops"])
    lines = ["# Operators every shipped .ort needs: build.py --include_ops_by_config <this file>"]
    lines += [f"{domain};{opset};{','.join(sorted(names))}" for (domain, opset), names in sorted(ops.items())]
    path = module_root / "ort" / "required_operators.config"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
