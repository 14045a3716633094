"""A step cache that CI runners share, at an fsspec URL (``s3://``, ``gs://``, ``file:///mnt/...``).

Steps always run against a local working cache (:class:`packager.cache.Cache`); this layer is read on
a local miss (download, verify every byte, then store locally) and filled on every store (upload).
Layout under the URL::

    cas/<sha[:2]>/<sha256>          one blob per distinct output file, named by its content
    steps/<key[:2]>/<key>.json      the entry record: {"format", "key", "meta", "outputs": {path:
                                    {"sha256", "size"}}}

Object stores have no atomic rename, so a store uploads the blobs first (immutable and named by their
bytes: two writers writing one blob write the same bytes) and the record last, as one small object:
a single PUT is atomic, so the record is the commit marker. Two writers racing on one key each write
a record naming only blobs that exist; the last PUT wins whole. A reader trusts a record only when
every blob it names exists and hashes right; a bad blob is deleted (the next store re-uploads it) and
the read is a miss. On a file system (``file://``, a mounted share) writes go through a temporary
name and a rename, which is atomic there.

A remote failure (network, credentials, permissions) never fails the build: it is logged once as a
warning, and the build goes on with the local cache only. Credentials and endpoints come from the
backend's usual sources (``AWS_*`` variables and ``~/.aws`` for s3fs, ``FSSPEC_<PROTOCOL>_<OPTION>``
variables for any backend), never from packager.toml.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
from pathlib import Path, PurePosixPath
from typing import Any

from packager.cache import EntryRecord, OutputRecord, sha256_file
from packager.errors import ConfigError, first_line

log = logging.getLogger(__name__)

REMOTE_FORMAT = 1

ATOMIC_PUT = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"})
"""Backends whose single write of an object is atomic (object stores); all others write a temporary
name and rename it."""

DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    # botocore's defaults wait 60 s per connection attempt and retry 5 times: an unreachable endpoint
    # would stall every step for minutes before the build falls back to the local cache.
    "s3": {"config_kwargs": {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 2}}},
}

EXTRAS = {"s3": "s3", "s3a": "s3"}
"""Which packager extra installs a backend (``pip install 'packager[s3]'``)."""


def _remote_path(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _relative(rel: object) -> str:
    """A record's file path, refused unless it stays inside the entry (a record is data from another
    machine: it must not write outside the folder it is downloaded to)."""
    path = PurePosixPath(str(rel))
    if path.is_absolute() or not path.parts or ".." in path.parts:
        raise ValueError(f"file path {rel!r} leaves the entry")
    return path.as_posix()


def _sha256(value: object) -> str:
    text = str(value)
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"{text[:20]!r} is not a sha256")
    return text


class RemoteCache:
    """The shared layer at ``url``; ``storage_options`` are passed to the fsspec backend over
    :data:`DEFAULT_OPTIONS`.

    Raises:
        ConfigError: the URL's protocol is unknown to fsspec or its backend is not installed.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec  # here, not at import: `packager --help` and local-only builds stay fast

        self.url = url.rstrip("/")
        protocol = self.url.split("://", 1)[0] if "://" in self.url else "file"
        try:
            fsspec.get_filesystem_class(protocol)
        except (ValueError, ImportError) as exc:
            fix = (
                f"pip install 'packager[{EXTRAS[protocol]}]'"
                if protocol in EXTRAS
                else "install the fsspec backend for it"
            )
            raise ConfigError(
                "[build].cache", [f"cannot use {self.url!r}: {first_line(exc)}. Fix: {fix}"]
            ) from None
        self.protocol = protocol
        self.options = {**DEFAULT_OPTIONS.get(protocol, {}), **(storage_options or {})}
        self.failure: str | None = None
        """Why this layer was switched off for the rest of the process (None while it works)."""
        self._fs: Any = None
        self._base = ""
        self._pid = 0

    @property
    def enabled(self) -> bool:
        return self.failure is None

    def _filesystem(self) -> tuple[Any, str]:
        """The fsspec file system and the path of the cache in it, made once per process: a forked
        child must not reuse the parent's event loop and connections."""
        if self._fs is None or self._pid != os.getpid():
            import fsspec

            self._fs, self._base = fsspec.core.url_to_fs(self.url, **self.options)
            self._pid = os.getpid()
        return self._fs, self._base

    def blob(self, sha256: str) -> str:
        return _remote_path(self._filesystem()[1], "cas", sha256[:2], sha256)

    def record_path(self, key: str) -> str:
        return _remote_path(self._filesystem()[1], "steps", key[:2], f"{key}.json")

    def _fail(self, action: str, exc: BaseException) -> None:
        self.failure = f"could not {action} ({type(exc).__name__}: {first_line(exc)})"
        log.warning(
            "shared cache %s: %s; this build goes on with the local cache only", self.url, self.failure
        )

    # -- reading -------------------------------------------------------------------------------------

    def fetch(self, key: str, into: Path) -> EntryRecord | None:
        """Download the entry ``key`` into the folder ``into`` (created), every file checked against
        its sha256; the record, or None on a miss (no record, a bad record, a missing or bad blob)."""
        if not self.enabled:
            return None
        try:
            fs, _ = self._filesystem()
            try:
                raw = fs.cat_file(self.record_path(key))
            except FileNotFoundError:
                return None
            record = self._parse(key, raw)
            if record is None:
                return None
            into.mkdir(parents=True, exist_ok=True)
            for rel, out in record.outputs.items():
                if not self._download(fs, out, into / rel):
                    return None
            return record
        except Exception as exc:  # any backend error (network, auth...) ends remote use, never the build
            self._fail(f"read {key[:12]}", exc)
            return None

    def _parse(self, key: str, raw: bytes) -> EntryRecord | None:
        try:
            data = json.loads(raw)
            if data["format"] != REMOTE_FORMAT or data["key"] != key:
                raise ValueError(f"format {data['format']} of key {str(data['key'])[:12]}")
            outputs = {
                _relative(rel): OutputRecord(_sha256(o["sha256"]), int(o["size"]), 0)
                for rel, o in data["outputs"].items()
            }
            if not isinstance(data["meta"], dict):
                raise ValueError("meta is not an object")
            return EntryRecord(key, data["meta"], outputs)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("shared cache %s: record of %s is unreadable (%s); a miss", self.url, key[:12], exc)
            return None

    def _download(self, fs: Any, out: OutputRecord, dest: Path) -> bool:
        blob = self.blob(out.sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            fs.get_file(blob, str(dest))
        except FileNotFoundError:
            log.warning("shared cache %s: blob %s is missing; a miss", self.url, out.sha256[:12])
            return False
        if sha256_file(dest) != out.sha256:
            log.warning(
                "shared cache %s: blob %s does not match its sha256; removing it (the next store "
                "uploads it again), a miss",
                self.url,
                out.sha256[:12],
            )
            with contextlib.suppress(Exception):
                fs.rm_file(blob)
            return False
        return True

    # -- writing -------------------------------------------------------------------------------------

    def push(self, key: str, entry: Path, record: EntryRecord) -> None:
        """Upload the local entry (folder ``entry``, its ``record``): missing blobs, then the record."""
        if not self.enabled:
            return
        try:
            fs, _ = self._filesystem()
            for rel, out in record.outputs.items():
                blob = self.blob(out.sha256)
                if not self._has(fs, blob, out.size):
                    self._put_file(fs, entry / "out" / rel, blob)
            outputs = {rel: {"sha256": o.sha256, "size": o.size} for rel, o in sorted(record.outputs.items())}
            data = {"format": REMOTE_FORMAT, "key": key, "meta": record.meta, "outputs": outputs}
            self._put_bytes(fs, self.record_path(key), json.dumps(data, sort_keys=True).encode())
        except Exception as exc:  # as in fetch: the local entry is stored, the build goes on
            self._fail(f"upload {key[:12]}", exc)
            return
        self.mark_pushed(entry)

    def backfill(self, key: str, entry: Path, record: EntryRecord) -> None:
        """Push a local hit that this remote has not received (a cache filled before the remote was
        configured, or while it was unreachable); a marker file in the entry says it was."""
        if self.enabled and not (entry / self._marker()).exists():
            self.push(key, entry, record)

    def mark_pushed(self, entry: Path) -> None:
        with contextlib.suppress(OSError):
            (entry / self._marker()).touch()

    def _marker(self) -> str:
        return f"remote-{hashlib.sha256(self.url.encode()).hexdigest()[:12]}"

    @staticmethod
    def _has(fs: Any, path: str, size: int) -> bool:
        try:
            return int(fs.info(path)["size"]) == size
        except FileNotFoundError:
            return False

    def _put_file(self, fs: Any, local: Path, path: str) -> None:
        if self.protocol in ATOMIC_PUT:
            fs.put_file(str(local), path)
            return
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.tmp-{secrets.token_hex(6)}"
        fs.put_file(str(local), tmp)
        fs.mv(tmp, path)

    def _put_bytes(self, fs: Any, path: str, data: bytes) -> None:
        if self.protocol in ATOMIC_PUT:
            fs.pipe_file(path, data)
            return
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.tmp-{secrets.token_hex(6)}"
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)
