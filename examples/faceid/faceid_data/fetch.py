"""Download pinned archives with the registries' own clients and extract verified files.

Archives are cached outside the repository and re-verified on every use, so a warm run costs a
few hashes and a truncated or tampered download is caught instead of silently reused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from faceid_data import PrepareError
from faceid_data.sources import Member, Source

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 900


class ChecksumError(PrepareError):
    """Bytes differ from the pin: never use them, whatever they are."""

    def __init__(self, what: str, path: Path | str, expected: str, actual: str) -> None:
        super().__init__(
            f"{what}: sha256 mismatch for {path}\n  expected {expected}\n  got      {actual}\n"
            "Fix: delete the file and rerun (a partial download is re-fetched); if it persists the "
            "upstream bytes changed: review them before updating the pin in sources.toml."
        )
        self.expected = expected
        self.actual = actual


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(what, path, expected, actual)


def verify_bytes(data: bytes, expected: str, what: str, origin: str) -> None:
    actual = sha256_bytes(data)
    if actual != expected:
        raise ChecksumError(what, origin, expected, actual)


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file and rename, so an interrupted run never leaves a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def download_command(source: Source, cache: Path) -> list[str]:
    """The registry client call that fetches exactly the pinned archive and nothing else."""
    if source.via == "apt":
        return ["apt-get", "download", source.label]
    binary = ["--no-binary", ":all:"] if source.kind == "sdist" else ["--only-binary", ":all:"]
    return [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
        "--disable-pip-version-check", "-d", str(cache), *binary, *source.pip_args, source.label,
    ]  # fmt: skip


def _fix_hint(source: Source, cache: Path) -> str:
    if source.via == "apt":
        return (
            "Fix: on Debian/Ubuntu run `apt-get update` as root (apt-get download needs the package "
            f"lists); elsewhere pass --no-debian; or copy {source.file} (sha256 {source.sha256}) "
            f"into {cache}."
        )
    return (
        "Fix: check that pip can reach PyPI (`python -m pip download --no-deps "
        f"{source.label}`; pip config / PIP_INDEX_URL), or copy {source.file} "
        f"(sha256 {source.sha256}) into {cache}."
    )


def _run_download(source: Source, cache: Path) -> str | None:
    """Run the client; return an error text, or None on success."""
    cmd = download_command(source, cache)
    if shutil.which(cmd[0]) is None and cmd[0] != sys.executable:
        return f"{cmd[0]} is not installed"
    log.info("downloading %s (%s)", source.label, source.file)
    try:
        proc = subprocess.run(
            cmd, cwd=cache, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        return f"`{' '.join(cmd)}` exited {proc.returncode}: {tail}"
    return None


def fetch_archive(source: Source, cache: Path) -> Path | None:
    """The verified archive; None if an optional source cannot be fetched (with a warning)."""
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / source.file
    if archive.exists():
        try:
            verify_file(archive, source.sha256, source.label)
            return archive
        except ChecksumError:
            log.warning("cached %s does not match its pin; downloading it again", archive.name)
            archive.unlink()
    error = _run_download(source, cache)
    if error is None and not archive.exists():
        prefixes = (source.name, source.name.replace("-", "_"))
        found = sorted(p.name for p in cache.iterdir() if p.name.startswith(prefixes))
        error = f"the client succeeded but {source.file} is not in {cache} (found: {found})"
    if error is not None:
        message = f"cannot fetch {source.label}: {error}\n{_fix_hint(source, cache)}"
        if source.required:
            raise PrepareError(message)
        log.warning("optional source skipped (fewer identities): %s", message)
        return None
    verify_file(archive, source.sha256, source.label)
    return archive


def _read_zip(archive: Path, wanted: set[str]) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        return {name: zf.read(name) for name in wanted & names}


def _read_tar_stream(tf: tarfile.TarFile, wanted: set[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for info in tf:
        name = info.name.removeprefix("./")
        if name in wanted and info.isfile():
            fh = tf.extractfile(info)
            if fh is not None:
                found[name] = fh.read()
    return found


def _read_tar(archive: Path, wanted: set[str]) -> dict[str, bytes]:
    with tarfile.open(archive, mode="r:*") as tf:
        return _read_tar_stream(tf, wanted)


def _read_deb(archive: Path, wanted: set[str]) -> dict[str, bytes]:
    """dpkg-deb handles whichever compression the package uses; stream its tar output."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
            found = _read_tar_stream(tf, wanted)
        proc.stdout.read()
    if proc.returncode != 0:
        raise PrepareError(f"dpkg-deb could not read {archive} (exit {proc.returncode}); delete it and rerun")
    return found


READERS: dict[str, Callable[[Path, set[str]], dict[str, bytes]]] = {
    "wheel": _read_zip,
    "sdist": _read_tar,
    "deb": _read_deb,
}


def install_members(source: Source, archive: Path, dest_for: Callable[[Member], Path]) -> dict[Member, Path]:
    """Copy each member to its destination after checking its pin; up-to-date files are kept."""
    placed = {m: dest_for(m) for m in source.members}
    stale = [m for m, dest in placed.items() if not (dest.exists() and sha256_file(dest) == m.sha256)]
    if not stale:
        return placed
    contents = READERS[source.kind](archive, {m.path for m in stale})
    for member in stale:
        if member.path not in contents:
            raise PrepareError(
                f"{source.label}: {member.path} is not in {archive.name}; the pin in sources.toml is wrong"
            )
        data = contents[member.path]
        verify_bytes(data, member.sha256, source.label, f"{archive.name}:{member.path}")
        write_atomic(placed[member], data)
        log.info("extracted %s -> %s", member.basename, placed[member])
    return placed
