"""sha256 of the files a build reads and writes, and facts the plan derives from large inputs,
memoized so that a file is read once per build, and with an opt-in memo file, once across builds
while it is unchanged."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

from packager.errors import DataError

log = logging.getLogger(__name__)

T = TypeVar("T")

RACY_NS = 2_000_000_000
"""A file modified less than this long before it is hashed is not memoized across builds: a second
same-size write within the file system's mtime granularity would keep the stale digest (git's
"racily clean" index entries)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_Key = tuple[str, str, int, int, int]
"""(kind, absolute path, size, mtime_ns, inode)."""


class Hasher:
    """sha256 of files and folders, and other facts derived from a file's bytes (:meth:`derived`),
    memoized by (absolute path, size, mtime_ns, inode).

    Args:
        memo: a JSON-lines file that keeps them across builds (by convention
            :attr:`Cache.memo_file`, ``<cache>/hashes.jsonl``); ``None`` (the default) keeps them for
            this object's life only. Safe with concurrent writers: each new value is one line appended
            with a single ``write(2)`` to an ``O_APPEND`` file, the last line of a (kind, path) wins,
            unreadable lines are skipped, and a lost line only costs a recomputation. Files modified
            less than :data:`RACY_NS` before reading are not written to it. The file is compacted (one
            line per kind and path) when it holds more than twice as many lines as that.
    """

    def __init__(self, memo: Path | None = None) -> None:
        self.memo = memo
        self._memo: dict[_Key, object] = {}
        self._loaded = memo is None
        self.hashed_bytes = 0
        """Bytes actually read to hash (not answered from a memo): what a no-op build should keep at 0."""

    def file(self, path: Path) -> str:
        digest = self.derived(path, "sha256", self._sha256)
        assert isinstance(digest, str)
        return digest

    def _sha256(self, path: Path) -> str:
        self.hashed_bytes += path.stat().st_size
        return sha256_file(path)

    def derived(self, path: Path, kind: str, compute: Callable[[Path], T]) -> T:
        """``compute(path)``, answered from the memo while the file's stats are unchanged.

        ``kind`` names what ``compute`` derives (one kind, one function); its result must survive a
        JSON round trip unchanged (str, numbers, lists, dicts). A plan reads a few large files on every
        build (an ONNX model's external-data names, a pairs file of 28k lines): a no-op reads neither.
        An exception from ``compute`` propagates and nothing is recorded.
        """
        st = path.stat()
        key = (kind, os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
        if not self._loaded:
            self._load()
        if key in self._memo:
            return cast(T, self._memo[key])
        value = compute(path)
        self._memo[key] = value
        if self.memo is not None and time.time_ns() - st.st_mtime_ns > RACY_NS:
            self._append(key, value)
        return value

    def known(self, path: Path, st: os.stat_result, digest: str) -> None:
        """Record a digest established otherwise (a cache entry's record whose stats match), so that a
        step reading that file as an input does not hash it again. Not written to the memo file."""
        self._memo[("sha256", os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)] = digest

    def path(self, path: Path) -> str:
        if path.is_dir():
            listing = {str(p.relative_to(path)): self.file(p) for p in sorted(path.rglob("*")) if p.is_file()}
            return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()
        if not path.exists():
            raise DataError(
                path,
                "input file not found (it existed when the build was planned)",
                "restore the file, or fix the paths in packager.toml, and build again",
            )
        return self.file(path)

    def _load(self) -> None:
        self._loaded = True
        assert self.memo is not None
        try:
            lines = self.memo.read_bytes().splitlines()
        except OSError:
            return
        latest: dict[tuple[str, str], tuple[int, int, int, object]] = {}
        for line in lines:
            try:
                kind, p, size, mtime, ino, value = json.loads(line)
                latest[(str(kind), str(p))] = (int(size), int(mtime), int(ino), value)
            except (ValueError, TypeError):
                continue  # a torn line, or one of an older layout: recomputed
        for (kind, p), (size, mtime, ino, value) in latest.items():
            self._memo[(kind, p, size, mtime, ino)] = value
        if len(lines) > 2 * len(latest) + 64:
            self._compact(latest)

    def _compact(self, latest: dict[tuple[str, str], tuple[int, int, int, object]]) -> None:
        assert self.memo is not None
        tmp = self.memo.with_name(f".{self.memo.name}.{os.getpid()}")
        try:
            tmp.write_text("".join(json.dumps([k, p, *v]) + "\n" for (k, p), v in latest.items()))
            os.replace(tmp, self.memo)  # a line another build appends meanwhile is lost: recomputed
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.debug("could not compact %s: %s", self.memo, exc)

    def _append(self, key: _Key, value: object) -> None:
        assert self.memo is not None
        line = (json.dumps([*key, value], separators=(",", ":")) + "\n").encode()
        try:
            self.memo.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.memo, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:  # only a memo: the value is right, the next build computes it again
            log.debug("could not record %s of %s in %s: %s", key[0], key[1], self.memo, exc)
