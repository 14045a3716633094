"""The bundle's Swift package as one archive with its checksum, for a release page or a package registry.

``ios/<Module>.zip`` holds the package folder ``<Module>/`` (Package.swift, Sources/, the model resources),
zipped deterministically (:func:`packager.archive.write_zip`: sorted entries, fixed timestamps and modes), so
the same bundle always gives the same bytes. ``ios/<Module>.zip.sha256`` holds its sha256 as one hex line:
what ``swift package compute-checksum <Module>.zip`` prints, since SwiftPM's checksum of an archive is the
SHA-256 of the file (SwiftPM docs, "Binary targets"; tests/test_publish_ios.py runs the real command).
"""

from __future__ import annotations

from pathlib import Path

from packager.archive import write_zip
from packager.hashing import sha256_file
from packager.target import PublishContext, ReleaseFiles
from targets.ios.config import IosSpec, module_name
from targets.ios.plan import PLATFORM


def checksum(archive: Path) -> str:
    """The archive's sha256, lower-case hex: SwiftPM's ``compute-checksum``."""
    return sha256_file(archive)


def publish(context: PublishContext) -> ReleaseFiles:
    """``out/ios/<Module>.zip`` and ``<Module>.zip.sha256`` from the bundle's ``ios/<Module>/``."""
    table = context.table
    assert isinstance(table, IosSpec)
    module = module_name(context.manifest.project.name, table)
    folder = context.out / PLATFORM
    folder.mkdir(parents=True, exist_ok=True)
    archive = write_zip(context.bundle / PLATFORM / module, folder / f"{module}.zip")
    sidecar = folder / f"{archive.name}.sha256"
    sidecar.write_text(checksum(archive) + "\n")
    return ReleaseFiles(files=[archive, sidecar])
