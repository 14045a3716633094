"""Where ``packager publish`` puts a release, so that a half-written version never looks complete.

* A local folder (a path or a ``file://`` URL): the release is staged in a hidden sibling
  ``.<version>.staging-*`` and renamed into place; rename(2) is atomic within a filesystem, and the next
  publish of that version removes a killed publish's staging folder (:mod:`packager.staging`). With
  ``force`` the old version is renamed aside first and deleted once the new one is in place.
* Any other fsspec filesystem (``s3://``, ``gs://``, ``memory://``...): object stores have no rename, so
  the files are uploaded in place, their sizes checked by listing, and the completion marker is uploaded
  last. A version folder without the marker is an interrupted publish: it is refused like an existing
  version (``force`` replaces it), and readers should treat it as absent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packager.errors import ConfigError, OutputError
from packager.staging import make_staging, reap_dead_staging

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem


@dataclass(frozen=True)
class ReleaseFile:
    path: str
    """Relative to the version folder, ``/``-separated."""
    sha256: str
    size_bytes: int


Stage = Callable[[Path], list[ReleaseFile]]
"""Writes the whole release into the empty local folder it is given; returns every file, the marker too."""


@dataclass(frozen=True)
class Destination:
    fs: AbstractFileSystem | None
    """None: a local folder, handled with pathlib and rename(2)."""
    root: str
    url: str
    """What the user passed, for messages."""

    @classmethod
    def open(cls, dest: str) -> Destination:
        """A folder path or an fsspec URL.

        Raises:
            ConfigError: (naming ``--to``) the URL's protocol is unknown or its package is not installed.
        """
        if "://" not in dest:
            return cls(None, str(Path(dest).expanduser()), dest)
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        try:
            fs, root = fsspec.core.url_to_fs(dest)
        except (ImportError, ValueError) as exc:
            raise ConfigError(
                "--to", [f"{dest}: {exc} (a folder, or an fsspec URL whose protocol's package is installed)"]
            ) from None
        return cls(None if isinstance(fs, LocalFileSystem) else fs, root, dest)

    def join(self, *parts: str) -> str:
        if self.fs is None:
            return str(Path(self.root, *parts))
        return "/".join([self.root.rstrip("/"), *parts])

    def display(self, *parts: str) -> str:
        """The user's DEST with ``parts`` appended, as they would type it."""
        return self.join(*parts) if self.fs is None else "/".join([self.url.rstrip("/"), *parts])


def _refuse(where: str, complete: bool, label: str, marker: str) -> None:
    if complete:
        raise OutputError(
            where, f"{label} is already published here",
            "bump [project].version and rebuild, or pass --force to replace the published version",
        )  # fmt: skip
    raise OutputError(
        where, f"a half-published {label} is here (no {marker}: an interrupted publish)",
        "pass --force to replace it",
    )  # fmt: skip


def place(
    destination: Destination, parts: tuple[str, ...], stage: Stage, *, force: bool, marker: str, label: str
) -> tuple[list[ReleaseFile], bool]:
    """Stage the release with ``stage`` and put it at ``destination/<parts...>``; returns its files and
    whether an existing version was replaced. ``label`` names the release in messages (``tiny 0.1.0``).

    Raises:
        OutputError: the version exists (complete, or without ``marker``) and ``force`` is not set, or the
            destination cannot be written. Whatever ``stage`` raises, after removing what was staged.
    """
    if destination.fs is None:
        return _place_local(Path(destination.join(*parts)), stage, force=force, marker=marker, label=label)
    return _place_remote(destination, parts, stage, force=force, marker=marker, label=label)


def _place_local(
    final: Path, stage: Stage, *, force: bool, marker: str, label: str
) -> tuple[list[ReleaseFile], bool]:
    exists = final.exists()
    if exists and not force:
        _refuse(str(final), (final / marker).is_file(), label, marker)
    created = [p for p in (final.parent, *final.parent.parents) if not p.exists()]
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        reap_dead_staging(final.parent, final.name)
        staging = make_staging(final.parent, final.name)
    except OSError as exc:
        fix = "pass --to a writable folder"
        raise OutputError(final.parent, f"cannot create the release folder ({exc.strerror})", fix) from None
    try:
        files = stage(staging)
        old = None
        if force and final.exists():  # the old version goes aside first: the swap is two renames
            old = make_staging(final.parent, final.name)  # a killed publish's is reaped like its staging
            os.replace(final, old / final.name)
        try:
            os.rename(staging, final)  # fails on a non-empty folder: a publish that finished meanwhile
        except OSError as exc:
            if old is not None:
                os.replace(old / final.name, final)
            if final.exists():
                _refuse(str(final), (final / marker).is_file(), label, marker)
            raise OutputError(final, f"cannot move the release into place ({exc})", "pass --to") from exc
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # innermost first; only the folders this publish made, and only if empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return files, exists


def _place_remote(
    destination: Destination, parts: tuple[str, ...], stage: Stage, *, force: bool, marker: str, label: str
) -> tuple[list[ReleaseFile], bool]:
    fs = destination.fs
    assert fs is not None
    final, where = destination.join(*parts), destination.display(*parts)
    exists = fs.exists(final)
    if exists and not force:
        _refuse(where, fs.exists(f"{final}/{marker}"), label, marker)
    with tempfile.TemporaryDirectory(prefix="packager-publish-") as scratch:
        out = Path(scratch)
        files = stage(out)
        try:
            if exists:
                if fs.exists(f"{final}/{marker}"):  # first, so the old version reads as incomplete
                    fs.rm_file(f"{final}/{marker}")
                fs.rm(final, recursive=True)
            body = [f for f in files if f.path != marker]
            for f in body:
                remote = f"{final}/{f.path}"
                fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)
                fs.put_file(str(out / f.path), remote)
            _check_uploaded(fs, final, body, where)
            fs.put_file(str(out / marker), f"{final}/{marker}")
        except OSError as exc:
            raise OutputError(
                where, f"upload failed ({exc}); the version has no {marker}, so it reads as unpublished",
                "fix the destination and publish again with --force",
            ) from exc  # fmt: skip
    return files, exists


def _check_uploaded(fs: AbstractFileSystem, final: str, files: list[ReleaseFile], where: str) -> None:
    """Every file is listed at its size before the marker goes up (an object store may list late)."""
    fs.invalidate_cache(final)
    listed = {
        str(info["name"]).rstrip("/").split(final.strip("/") + "/", 1)[-1]: int(info["size"])
        for info in fs.find(final, detail=True).values()
    }
    wrong = [f.path for f in files if listed.get(f.path) != f.size_bytes]
    if wrong:
        raise OutputError(
            where, f"{len(wrong)} uploaded file(s) missing or of the wrong size: {', '.join(wrong[:5])}",
            "publish again with --force",
        )  # fmt: skip
