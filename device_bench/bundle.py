"""Which artifacts to benchmark: read the bundle's manifest.json, or scan files when there is none.

``device-bench run PATH`` accepts the bundle root or any folder inside it (``dist/faceid-1.4.0/android``):
the nearest manifest.json at or above PATH supplies sha256, model and variant names; only artifacts
under PATH with a format some tool runs are selected. Results then carry the manifest's sha256, which
is how a number is tied to the exact file that shipped.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_bench.errors import BundleError
from device_bench.results import ArtifactRef, BundleRef
from packager.hashing import sha256_file
from packager.manifest import Manifest, load_manifest

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    ref: ArtifactRef
    local_path: Path
    input_range: tuple[float, float] | None = None
    """Float input value range implied by the model's preprocessing in the manifest, if known."""


def input_range(preprocessing: dict[str, Any]) -> tuple[float, float] | None:
    """``(pixel - mean) / std`` over the pixel range, across channels: what the model sees in the app."""
    try:
        low, high = (float(v) for v in preprocessing.get("pixel_range", [0, 255]))
        ends = [
            (edge - float(m)) / float(s)
            for m, s in zip(preprocessing["mean"], preprocessing["std"], strict=False)
            for edge in (low, high)
        ]
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return (min(ends), max(ends)) if ends else None


@dataclass(frozen=True)
class Selection:
    bundle: BundleRef
    artifacts: list[Artifact]


def find_manifest(path: Path) -> Path | None:
    start = path if path.is_dir() else path.parent
    for folder in (start, *start.parents):
        candidate = folder / MANIFEST
        if candidate.is_file():
            return candidate
    return None


def select_artifacts(path: Path, formats: Collection[str]) -> Selection:
    """Artifacts under ``path`` whose format is in ``formats``, described by the nearest manifest."""
    path = path.resolve()
    if not path.exists():
        raise BundleError(
            str(path), "does not exist", "pass a bundle folder such as dist/<project>-<version>"
        )
    manifest = find_manifest(path)
    if manifest is None:
        log.info("no %s at or above %s: scanning files", MANIFEST, path)
        selection = _scan(path, formats)
    else:
        selection = _from_manifest(manifest, path, formats)
    if not selection.artifacts:
        wanted = ", ".join(f".{f}" for f in sorted(formats))
        raise BundleError(
            str(path), f"no artifacts to benchmark ({wanted})", "point at a bundle folder holding such files"
        )
    return selection


def read_manifest(manifest: Path) -> Manifest:
    """The bundle's manifest.json as packager wrote it, or a BundleError saying why not and how to fix it."""
    return load_manifest(manifest, BundleError, "use a device-bench as new as the packager that built it")


def _from_manifest(manifest: Path, path: Path, formats: Collection[str]) -> Selection:
    root = manifest.parent
    described = read_manifest(manifest)
    ranges = {m.name: input_range(m.preprocessing) for m in described.models}
    artifacts = []
    for entry in described.artifacts:
        local = root / entry.path
        if entry.format not in formats or not _is_under(local, path):
            continue
        if not local.is_file():
            raise BundleError(
                str(manifest), f"lists {entry.path} but the file is missing", "rebuild the bundle"
            )
        ref = ArtifactRef(
            path=entry.path,
            sha256=entry.sha256,
            size_bytes=entry.size_bytes,
            model=entry.model,
            variant=entry.variant,
            format=entry.format,
            platform=entry.platform,
        )
        artifacts.append(Artifact(ref, local, ranges.get(ref.model)))
    project = described.project
    bundle = BundleRef(root=str(root), manifest=str(manifest), project=project.name, version=project.version)
    return Selection(bundle, artifacts)


def _scan(path: Path, formats: Collection[str]) -> Selection:
    root = path if path.is_dir() else path.parent
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    artifacts = []
    for file in files:
        fmt = file.suffix.lstrip(".")
        if fmt not in formats:
            continue
        ref = ArtifactRef(
            path=file.relative_to(root).as_posix(),
            sha256=sha256_file(file),
            size_bytes=file.stat().st_size,
            model=file.parent.name if file.parent != root else file.stem,
            variant=file.stem,
            format=fmt,
        )
        artifacts.append(Artifact(ref, file))
    return Selection(BundleRef(root=str(root)), artifacts)


def _is_under(file: Path, folder: Path) -> bool:
    resolved = file.resolve()
    return resolved == folder or folder in resolved.parents
