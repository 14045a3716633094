"""The Swift package's generated files, made from the bundle's manifest (never typed by hand).

Every resource name, tensor name, shape and Core ML feature name comes from the manifest's shipped
artifacts; the preprocessing and output kinds come from the same config the host validation used.
Besides the Swift sources and ``Package.swift`` (:mod:`targets.ios.codegen`), this writes into ``ort/``
(outside ``Sources``, so not into the app) one session config JSON per .ort -- the CoreML EP options the
generated loaders use (``ModelFormat``, ``MLComputeUnits``, ``RequireStaticInputShapes``; the loader adds
``ModelCacheDirectory``, a folder only the device knows) -- for teams that write their own loader.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from packager.config import ModelSpec
from packager.manifest import ManifestArtifact, ManifestContent
from packager.target import SourceContext
from targets.ios.codegen import (
    CoreMLArtifact,
    CoreMLFile,
    CoreMLOutput,
    IosPackage,
    ModelLoader,
    OrtArtifact,
    render_package,
)
from targets.ios.config import IosSpec, module_name
from targets.ios.plan import PLATFORM
from targets.loaders import Preprocessing, output_infos
from targets.ort_mobile.ep_config import EpConfig
from targets.ort_mobile.session_files import write_session_configs

COREML_PREFERENCE = ("int8-weights.mlpackage", "fp16.mlpackage")
"""The Core ML file tried first: the smaller one when both ship (same FP16 compute, INT8 weights)."""


def _resource(artifact: ManifestArtifact, module: str) -> str:
    """The artifact's path under ``Sources/<Module>/Resources``."""
    return artifact.path.split(f"{PLATFORM}/{module}/Sources/{module}/Resources/", 1)[1]


def _ort(mine: list[ManifestArtifact], module: str, model_input: tuple[str, list[int]]) -> OrtArtifact | None:
    orts = [a for a in mine if a.format == "ort"]
    if not orts:
        return None
    fp32 = next((a for a in orts if a.variant == "fp32"), None)
    primary = next((a for a in orts if a.variant != "fp32"), fp32)
    assert primary is not None
    config = EpConfig.model_validate(primary.validation.details["session_config"])
    name, shape = model_input
    return OrtArtifact(
        resource=_resource(primary, module),
        precision=primary.precision,
        input_name=name,
        input_shape=tuple(int(d) for d in shape),
        plans=tuple(config.plans),
        fallback_resource=_resource(fp32, module) if fp32 is not None and primary is not fp32 else None,
    )


def _coreml(mine: list[ManifestArtifact], module: str, table: IosSpec) -> CoreMLArtifact | None:
    packages = {a.path.rsplit("/", 1)[-1]: a for a in mine if a.format == "mlpackage"}
    order = [packages[name] for name in COREML_PREFERENCE if name in packages]
    if not order:
        return None
    primary = order[0]
    coreml = primary.validation.details["coreml"]
    assert isinstance(coreml, dict)
    onnx_names: dict[str, str] = coreml["feature_names"]
    return CoreMLArtifact(
        resource=_resource(primary, module),
        precision=primary.precision,
        input_name=primary.inputs[0].name,
        input_shape=tuple(int(d) for d in primary.inputs[0].shape),
        outputs=tuple(
            CoreMLOutput(name=o.name, onnx_name=onnx_names[o.name], shape=tuple(int(d) for d in o.shape))
            for o in primary.outputs
        ),
        fallbacks=tuple(CoreMLFile(resource=_resource(a, module), precision=a.precision) for a in order[1:]),
        compute_units=table.compute_units,
    )


def _loader(spec: ModelSpec, table: IosSpec, module: str, manifest: ManifestContent) -> ModelLoader:
    model = next(m for m in manifest.models if m.name == spec.name)
    outputs = output_infos(spec, model.outputs)
    mine = [a for a in manifest.artifacts if a.platform == PLATFORM and a.model == spec.name]
    return ModelLoader(
        name=spec.name,
        preprocessing=Preprocessing.from_input_spec(spec.input),
        outputs=outputs,
        ort=_ort(mine, module, (model.inputs[0].name, list(model.inputs[0].shape))),
        coreml=_coreml(mine, module, table),
    )


def bundle_version(context: SourceContext) -> str:
    """``<project> <version> (<hash>)``, the hash over every shipped iOS file's sha256: the loaders key
    their on-device caches (compiled Core ML models, CoreML EP caches) by it, so a new bundle recompiles."""
    digest = hashlib.sha256()
    for artifact in context.manifest.artifacts:
        if artifact.platform == PLATFORM:
            digest.update(f"{artifact.path}\0{artifact.sha256}\n".encode())
    project = context.manifest.project
    return f"{project.name} {project.version} ({digest.hexdigest()[:12]})"


def ios_package(context: SourceContext) -> IosPackage:
    """The package description of this bundle: one loader per model with its shipped runtimes."""
    table = context.table
    assert isinstance(table, IosSpec)
    module = module_name(context.config.project.name, table)
    shipped = {a.model for a in context.manifest.artifacts if a.platform == PLATFORM}
    return IosPackage(
        module=module,
        models=tuple(
            _loader(spec, table, module, context.manifest)
            for spec in context.config.models
            if spec.name in shipped
        ),
        bundle_version=bundle_version(context),
        deployment_target=table.ios_version,
        threads=table.threads,
    )


def generate(context: SourceContext) -> list[Path]:
    """Write the package's Swift, Package.swift and README, and the session configs; returns every file
    written."""
    description = ios_package(context)
    root = context.root / PLATFORM
    written = render_package(description, root)
    orts = [a for a in context.manifest.artifacts if a.platform == PLATFORM and a.format == "ort"]
    written += write_session_configs(
        ((_resource(a, description.module), a) for a in orts), root / description.module / "ort"
    )
    return written
