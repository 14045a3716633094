"""Write ``dist/<name>-<version>/`` atomically: a failed build never leaves a half bundle.

Everything is staged in a sibling temp folder and renamed into place; the previous bundle (if any)
is only removed once the new one is complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from packager.archive import write_zip
from packager.assemble import BundleFile
from packager.errors import OutputError
from packager.manifest import (
    SCHEMA_VERSION,
    ArtifactValidation,
    Manifest,
    ManifestArtifact,
    ManifestContent,
    ManifestFile,
    ManifestModel,
    ManifestProject,
    ManifestSource,
)
from packager.results import BuildResult
from packager.staging import make_staging, reap_dead_staging

MANIFEST_SCHEMA = SCHEMA_VERSION


def bundle_name(result: BuildResult) -> str:
    return f"{result.project}-{result.version}"


def write_results(
    result: BuildResult, folder: Path, write_report: Callable[[BuildResult, Path], list[Path]]
) -> list[Path]:
    """results.json plus the reports rendered from it: what a bundle and a rejected build both carry.
    Returns the files written, results.json first."""
    results = folder / "results.json"
    results.write_text(result.model_dump_json(indent=1) + "\n")
    return [results, *write_report(result, folder)]


def ensure_writable(out_root: Path) -> None:
    """Fail before any expensive work if the output folder cannot be written.

    Creates nothing: a build that fails later must not leave an empty ``dist/`` behind. When the
    folder does not exist yet, its nearest existing ancestor must be a writable folder.
    """
    probe = out_root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(
            out_root, f"output folder is not writable ({probe} is a file)", "pass --out to a writable folder"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(
            out_root, f"output folder is not writable ({exc.strerror})", "pass --out to a writable folder"
        ) from None


SourceGenerator = tuple[str, Callable[[ManifestContent, Path], list[Path]]]
"""A platform's name and its code generator: given the manifest so far and the bundle folder being
written, it writes its source files under ``<platform>/`` and returns their paths."""


def manifest(
    result: BuildResult,
    files: list[BundleFile],
    built_at: str | None = None,
    sources: list[ManifestSource] | None = None,
    archives: list[ManifestSource] | None = None,
    reports: list[ManifestFile] | None = None,
) -> Manifest:
    """Everything a release engineer or a device harness needs to trust and run the artifacts.

    Every file in ``files`` is described by the result it was validated as: an ONNX variant (the
    reference included) or a platform artifact (``ModelResult.artifacts``) of the same model and path.
    """
    described = {(m.name, v.file): v for m in result.models for v in [m.reference, *m.variants, *m.artifacts]}
    artifacts = []
    for f in sorted(files, key=lambda f: f.dest):
        found = described.get((f.model, f.dest))
        if found is None:
            raise ValueError(
                f"bundle file {f.dest} of model {f.model!r} has no result in its ModelResult "
                "(reference, variants or artifacts): every shipped artifact must be validated or say why not"
            )
        artifacts.append(
            ManifestArtifact(
                path=f.dest,
                sha256=f.sha256,
                size_bytes=f.size_bytes,
                model=f.model,
                variant=f.variant,
                platform=found.platform,
                runtime=found.runtime,
                format=found.format,
                precision=found.precision,
                inputs=f.inputs,
                outputs=f.outputs,
                validation=ArtifactValidation.from_result(found),
                nondeterminism=f.nondeterminism,
            )
        )
    content = ManifestContent(
        schema_version=MANIFEST_SCHEMA,
        project=ManifestProject(name=result.project, version=result.version),
        config_sha256=result.config_sha256,
        gates_enforced=result.gates_enforced,
        passed=result.passed,
        tool_versions=result.tool_versions,
        settings=result.settings,
        models=[ManifestModel.from_result(m) for m in result.models],
        artifacts=artifacts,
        sources=sorted(sources or [], key=lambda s: s.path),
        archives=sorted(archives or [], key=lambda s: s.path),
        reports=sorted(reports or [], key=lambda s: s.path),
    )
    return Manifest.seal(content, built_at or datetime.now(UTC).isoformat(timespec="seconds"))


CORE_FOLDER = "models"
"""Where the ONNX variants ship; every other top-level folder belongs to one platform target."""


def platform_folders(paths: list[str]) -> list[str]:
    """Top-level bundle folders that hold a platform's files (each gets ``<platform>.zip``)."""
    tops = {path.split("/", 1)[0] for path in paths if "/" in path}
    return sorted(tops - {CORE_FOLDER})


def generate_sources(
    generators: list[SourceGenerator], content: ManifestContent, root: Path
) -> list[ManifestSource]:
    """Run each platform's generator over the manifest so far; describe every file it wrote.

    Raises:
        ValueError: a generator wrote outside ``<platform>/`` or returned a path that is not a file.
    """
    described: list[ManifestSource] = []
    for platform, generate in generators:
        for path in generate(content, root):
            rel = path.resolve().relative_to(root.resolve()).as_posix()
            if not rel.startswith(f"{platform}/") or not path.is_file():
                raise ValueError(f"target {platform} generated {rel}: not a file under {platform}/")
            described.append(_describe(path, root, platform))
    return described


def _file(path: Path, root: Path) -> ManifestFile:
    data = path.read_bytes()
    return ManifestFile(
        path=path.resolve().relative_to(root.resolve()).as_posix(),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )


def _describe(path: Path, root: Path, platform: str) -> ManifestSource:
    return ManifestSource(**dict(_file(path, root)), platform=platform)


def write_bundle(
    out_root: Path,
    result: BuildResult,
    files: list[BundleFile],
    write_report: Callable[[BuildResult, Path], list[Path]],
    generators: list[SourceGenerator] | None = None,
) -> Path:
    """Copy the artifacts, run the platforms' code generators over the manifest, zip each platform
    folder, write manifest.json and the reports, then move the staged folder into place."""
    ensure_writable(out_root)
    created = [p for p in (out_root, *out_root.parents) if not p.exists()]
    final = out_root / bundle_name(result)
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            out_root, f"cannot create the output folder ({exc.strerror})", "pass --out"
        ) from None
    reap_dead_staging(out_root, final.name)
    staging = make_staging(out_root, final.name)
    try:
        for f in files:
            dest = staging / f.dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            if f.source.is_dir():  # a folder artifact, such as an .mlpackage
                shutil.copytree(f.source, dest)
            else:
                shutil.copyfile(f.source, dest)
        built_at = datetime.now(UTC).isoformat(timespec="seconds")
        sources = generate_sources(generators or [], manifest(result, files, built_at), staging)
        archives = [
            _describe(write_zip(staging / platform, staging / f"{platform}.zip"), staging, platform)
            for platform in platform_folders([f.dest for f in files] + [s.path for s in sources])
        ]
        reports = [_file(path, staging) for path in write_results(result, staging, write_report)]
        final_manifest = manifest(result, files, built_at, sources, archives, reports)
        (staging / "manifest.json").write_text(final_manifest.to_json())
        old = None
        if final.exists():
            old = make_staging(out_root, final.name)  # a killed build's is reaped like its staging
            os.replace(final, old / final.name)
        os.replace(staging, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        _discard(staging, created)
        raise OutputError(
            final, f"could not write the bundle ({exc})", "free disk space or pass --out"
        ) from exc
    except BaseException:
        _discard(staging, created)
        raise
    return final


def _discard(staging: Path, created: list[Path]) -> None:
    """Remove the staging folder and the output folders this build created (only if still empty)."""
    shutil.rmtree(staging, ignore_errors=True)
    for folder in created:  # innermost first
        try:
            folder.rmdir()
        except OSError:
            break
