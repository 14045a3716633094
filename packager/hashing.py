"""sha256 of the files a build reads and writes, memoized so that a file is read once per build, and
with an opt-in memo file, once across builds while it is unchanged."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from packager.errors import DataError

log = logging.getLogger(__name__)

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


class Hasher:
    """sha256 of files and folders, memoized by (absolute path, size, mtime_ns, inode).

    Args:
        memo: a JSON-lines file that keeps digests across builds (by convention
            :attr:`Cache.memo_file`, ``<cache>/hashes.jsonl``); ``None`` (the default) keeps them for
            this object's life only. Safe with concurrent writers: each new digest is one line appended
            with a single ``write(2)`` to an ``O_APPEND`` file, the last line of a path wins, unreadable
            lines are skipped, and a lost line only costs a re-hash. Files modified less than
            :data:`RACY_NS` before hashing are not written to it. The file is compacted (one line per
            path) when it holds more than twice as many lines as paths.
    """

    def __init__(self, memo: Path | None = None) -> None:
        self.memo = memo
        self._memo: dict[tuple[str, int, int, int], str] = {}
        self._loaded = memo is None
        self.hashed_bytes = 0
        """Bytes actually read to hash (not answered from a memo): what a no-op build should keep at 0."""

    def file(self, path: Path) -> str:
        st = path.stat()
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
        if not self._loaded:
            self._load()
        digest = self._memo.get(key)
        if digest is None:
            digest = sha256_file(path)
            self._memo[key] = digest
            self.hashed_bytes += st.st_size
            if self.memo is not None and time.time_ns() - st.st_mtime_ns > RACY_NS:
                self._append(key, digest)
        return digest

    def known(self, path: Path, st: os.stat_result, digest: str) -> None:
        """Record a digest established otherwise (a cache entry's record whose stats match), so that a
        step reading that file as an input does not hash it again. Not written to the memo file."""
        self._memo[(os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)] = digest

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
        latest: dict[str, tuple[int, int, int, str]] = {}
        for line in lines:
            try:
                p, size, mtime, ino, digest = json.loads(line)
                latest[str(p)] = (int(size), int(mtime), int(ino), str(digest))
            except (ValueError, TypeError):
                continue
        for p, (size, mtime, ino, digest) in latest.items():
            self._memo[(p, size, mtime, ino)] = digest
        if len(lines) > 2 * len(latest) + 64:
            self._compact(latest)

    def _compact(self, latest: dict[str, tuple[int, int, int, str]]) -> None:
        assert self.memo is not None
        tmp = self.memo.with_name(f".{self.memo.name}.{os.getpid()}")
        try:
            tmp.write_text("".join(json.dumps([p, *v]) + "\n" for p, v in latest.items()))
            os.replace(tmp, self.memo)  # a line another build appends meanwhile is lost: a re-hash
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.debug("could not compact %s: %s", self.memo, exc)

    def _append(self, key: tuple[str, int, int, int], digest: str) -> None:
        assert self.memo is not None
        line = (json.dumps([*key, digest]) + "\n").encode()
        try:
            self.memo.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.memo, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:  # only a memo: the digest is right, the next build hashes again
            log.debug("could not record a digest in %s: %s", self.memo, exc)
