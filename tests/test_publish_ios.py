"""targets/ios/package_archive.py: the Swift package published as ``ios/<Module>.zip`` with its checksum.

One tiny iOS bundle (ORT artifacts only, ~1 s) is published twice; SwiftPM's own ``swift package
compute-checksum`` runs in the Debian trixie chroot of tests/swift/toolchain.py (skipped with the reason
when the chroot cannot be built here).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
from swift.toolchain import _in_chroot, toolchain

from packager.build import BuildOptions
from packager.config import load_config
from packager.pipeline import build_project
from packager.publish import PublishOptions, publish_bundle

TABLE = '\n[ios]\nmodule = "Tiny"\nruntimes = ["ort"]\n'


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory, tiny_project_in) -> tuple[Path, Path, Path]:
    """(bundle, the version folder of a first publish, of a second one of the same bundle)."""
    config = tiny_project_in(tmp_path_factory.mktemp("spm"), '["fp16"]', TABLE)
    bundle = build_project(load_config(config), BuildOptions()).bundle
    folders = []
    for name in ("first", "second"):
        dest = tmp_path_factory.mktemp(name)
        publish_bundle(bundle, str(dest), PublishOptions())
        folders.append(dest / "tiny" / "0.1.0")
    return bundle, folders[0], folders[1]


def test_the_archive_holds_the_swift_package_folder_as_the_bundle_has_it(
    releases: tuple[Path, Path, Path],
) -> None:
    bundle, version, _ = releases
    archive = zipfile.ZipFile(version / "ios" / "Tiny.zip")
    package = bundle / "ios" / "Tiny"
    files = {
        f"Tiny/{p.relative_to(package).as_posix()}": p.read_bytes() for p in package.rglob("*") if p.is_file()
    }
    assert "Tiny/Package.swift" in files and "Tiny/Sources/Tiny/Resources/embedder/fp32.ort" in files
    assert {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")} == files
    assert archive.namelist() == sorted(archive.namelist())
    assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_the_same_bundle_gives_the_same_archive_bytes(releases: tuple[Path, Path, Path]) -> None:
    _, first, second = releases
    assert (first / "ios" / "Tiny.zip").read_bytes() == (second / "ios" / "Tiny.zip").read_bytes()


def test_the_checksum_file_is_the_archives_sha256(releases: tuple[Path, Path, Path]) -> None:
    _, version, _ = releases
    expected = hashlib.sha256((version / "ios" / "Tiny.zip").read_bytes()).hexdigest()
    assert (version / "ios" / "Tiny.zip.sha256").read_text() == expected + "\n"


def test_swiftpm_compute_checksum_prints_the_same_checksum(releases: tuple[Path, Path, Path]) -> None:
    _, version, _ = releases
    chain = toolchain()
    folder = Path(tempfile.mkdtemp(prefix="packager-publish-", dir=chain.root / "tmp"))
    try:
        shutil.copyfile(version / "ios" / "Tiny.zip", folder / "Tiny.zip")
        inner = "/" + str(folder.relative_to(chain.root))
        done = _in_chroot(
            chain.root, ["swift", "package", "compute-checksum", "Tiny.zip"], inner, timeout=300
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == (version / "ios" / "Tiny.zip.sha256").read_text()
