"""The step cache: content-addressed entries on local disk (hashing: :mod:`packager.hashing`).

Layout of a cache root (the *working* cache: steps always run against a local one)::

    steps/<key[:2]>/<key>/entry.json   the record: sha256, size and mtime_ns of every output file, and
                         /out/         the step's metadata; the step's files
    steps/<key[:2]>/.lock              flock taken to store, replace or remove an entry of that shard
    tmp/<lease>-<kind>-<random>/       scratch, staging and trash folders of one live build
    locks/<lease>.lock                 flock held by that build (``packager.cache_lease``)
    last/<step>.json                   each step's last key inputs, for "reruns: input changed: ..."
    hashes.jsonl                       the opt-in persistent memo of :class:`Hasher`

An entry is staged complete under ``tmp/`` and appears by one ``rename``; it is never modified in
place after that (the record's stats may be refreshed by an atomic replace), so a reader never sees
half an entry and a build killed at any instant leaves only a ``tmp/`` folder its lease marks dead.
Entries are content-addressed: when two builds store one key, the first entry stays and the second
is dropped. A corrupt entry is a logged miss, never a crash (dvc's rule, STYLE.md "Cache keys").
The last use of an entry is its folder's mtime, touched on every hit (``packager clean --older-than``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packager.cache_lease import TMP_DIR, Lease, disk_full, reap, shard_lock
from packager.errors import OutputError
from packager.hashing import Hasher, sha256_file

# Hasher lives in packager.hashing; the step runner and the bundle code import it from here.
__all__ = ["Cache", "CacheFull", "EntryRecord", "Hasher", "OutputRecord", "open_cache", "sha256_file"]

if TYPE_CHECKING:
    from packager.config import BuildSpec
    from packager.remote_cache import RemoteCache

log = logging.getLogger(__name__)

ENTRY_FORMAT = 2
ENTRY_FILE = "entry.json"
MEMO_FILE = "hashes.jsonl"
LOW_SPACE_BYTES = 64 * 2**20
"""Below this much free space, an OSError without an errno from a step is taken for a full disk:
numpy's ``save``/``tofile`` report one only as "61440 requested and 31712 written"."""


class CacheFull(OutputError):
    """The disk (or quota) holding the step cache is full; nothing half-written was left in it."""

    def __init__(self, root: Path, exc: OSError) -> None:
        where = f" writing {exc.filename}" if exc.filename else ""
        super().__init__(
            root,
            f"no space left on the device holding the step cache ({exc.strerror or exc}{where})",
            "free space there (`packager clean --older-than 7d` drops entries unused for a week), or point "
            "[build].cache, --cache or PACKAGER_CACHE at a folder on a larger disk",
        )


@dataclass(frozen=True)
class OutputRecord:
    sha256: str
    size: int
    """Bytes."""
    mtime_ns: int
    """The file's mtime when stored (ns); with ``size``, what a load compares before trusting it."""


@dataclass(frozen=True)
class EntryRecord:
    """``entry.json``: what a step made (relative path -> :class:`OutputRecord`) and its metadata."""

    key: str
    meta: dict[str, object]
    outputs: dict[str, OutputRecord]

    def to_json(self) -> str:
        outputs = {rel: vars(o) for rel, o in sorted(self.outputs.items())}
        data = {"format": ENTRY_FORMAT, "key": self.key, "meta": self.meta, "outputs": outputs}
        return json.dumps(data, sort_keys=True, indent=1)

    @classmethod
    def parse(cls, raw: bytes | str) -> EntryRecord:
        """Raises ValueError for anything but a record of :data:`ENTRY_FORMAT`."""
        try:
            data = json.loads(raw)
            if data["format"] != ENTRY_FORMAT:
                raise ValueError(f"entry format {data['format']}, expected {ENTRY_FORMAT}")
            outputs = {
                str(rel): OutputRecord(str(o["sha256"]), int(o["size"]), int(o["mtime_ns"]))
                for rel, o in data["outputs"].items()
            }
            meta = data["meta"]
            if not isinstance(meta, dict):
                raise ValueError("meta is not an object")
            return cls(str(data["key"]), meta, outputs)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed entry record ({type(exc).__name__}: {exc})") from None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a uniquely named sibling and ``os.replace``: concurrent
    writers of one path each replace it whole, and a killed writer leaves at most a ``.tmp`` file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Cache:
    """The working step cache at ``root`` (created on first use), optionally backed by ``remote``, a
    cache shared between machines: read on a local miss, filled on every store (:mod:`packager.remote_cache`).

    Every method that writes raises :class:`CacheFull` when the disk is full, leaving no half entry.
    """

    def __init__(self, root: Path, remote: RemoteCache | None = None) -> None:
        self.root = root
        self.remote = remote
        self._lease: Lease | None = None
        self._read_only = False
        self._reaped: list[Path] = []

    @property
    def memo_file(self) -> Path:
        """Where a build's :class:`Hasher` keeps input digests across builds (``Hasher(memo=...)``)."""
        return self.root / MEMO_FILE

    def entry(self, key: str) -> Path:
        return self.root / "steps" / key[:2] / key

    # -- reading -------------------------------------------------------------------------------------

    def load(self, key: str, hasher: Hasher) -> dict[str, object] | None:
        """The metadata of the entry ``key``, or None on a miss (then ``remote`` is asked).

        Output files whose (size, mtime_ns) match the record are trusted without reading them; the
        others are hashed and must match the recorded sha256, else the entry is removed as corrupt
        (``packager cache --verify`` re-hashes everything). A hit touches the entry (its last use).
        """
        self._take_lease(required=False)
        entry = self.entry(key)
        try:
            record = EntryRecord.parse((entry / ENTRY_FILE).read_bytes())
        except FileNotFoundError:
            return self._from_remote(key, hasher)
        except (OSError, ValueError) as exc:
            self._drop_corrupt(key, str(exc))
            return self._from_remote(key, hasher)
        problem, restat = self._check(entry, record, hasher, trust_stats=True)
        if problem is not None:
            self._drop_corrupt(key, problem)
            return self._from_remote(key, hasher)
        if restat:  # e.g. a CI cache restored from an archive: same bytes, new mtimes
            self._refresh_stats(key, record)
        with contextlib.suppress(OSError):
            os.utime(entry)
        if self.remote is not None:
            self.remote.backfill(key, entry, record)
        return record.meta

    def record(self, key: str) -> EntryRecord:
        """The parsed ``entry.json`` of ``key``. Raises OSError or ValueError."""
        return EntryRecord.parse((self.entry(key) / ENTRY_FILE).read_bytes())

    def verify(self, key: str) -> str | None:
        """Re-hash every output of ``key`` (ignoring stats and memos); None when it is intact, else
        what is wrong."""
        try:
            record = self.record(key)
        except (OSError, ValueError) as exc:
            return str(exc)
        return self._check(self.entry(key), record, Hasher(), trust_stats=False)[0]

    def stored_keys(self) -> Iterator[str]:
        """Every stored key (entries being written are under ``tmp/``, not here)."""
        with contextlib.suppress(FileNotFoundError):
            for shard in sorted((self.root / "steps").iterdir()):
                if len(shard.name) == 2 and shard.is_dir():
                    yield from sorted(p.name for p in shard.iterdir() if len(p.name) == 64 and p.is_dir())

    def last_used(self, key: str) -> float:
        """Seconds since the epoch the entry was stored or last hit. Raises OSError when it is gone."""
        return self.entry(key).stat().st_mtime

    def _check(
        self, entry: Path, record: EntryRecord, hasher: Hasher, trust_stats: bool
    ) -> tuple[str | None, bool]:
        """(problem or None, whether some stats differ from the record although the bytes match)."""
        if record.key != entry.name:
            return f"record is for key {record.key[:12]}…", False
        restat = False
        for rel, out in record.outputs.items():
            path = entry / "out" / rel
            try:
                st = path.stat()
            except OSError:
                return f"{rel} is missing", False
            if trust_stats and st.st_size == out.size and st.st_mtime_ns == out.mtime_ns:
                hasher.known(path, st, out.sha256)
                continue
            if st.st_size != out.size or hasher.file(path) != out.sha256:
                return f"{rel} does not match its recorded sha256", False
            restat = True
        return None, restat

    def _refresh_stats(self, key: str, record: EntryRecord) -> None:
        entry = self.entry(key)
        outputs = {}
        for rel, out in record.outputs.items():
            st = (entry / "out" / rel).stat()
            outputs[rel] = OutputRecord(out.sha256, st.st_size, st.st_mtime_ns)
        try:
            with shard_lock(entry.parent):
                write_atomic(entry / ENTRY_FILE, EntryRecord(key, record.meta, outputs).to_json())
        except OSError as exc:
            log.debug("could not refresh the stats of %s: %s", entry, exc)

    def _drop_corrupt(self, key: str, problem: str) -> None:
        """Log and remove a corrupt entry; the load is a miss. Removal re-checks every byte under the
        shard's lock first: another build may have replaced the entry meanwhile."""
        entry = self.entry(key)
        log.warning("cache entry %s is corrupt (%s); rebuilding it", entry, problem)
        with contextlib.suppress(OSError):
            self.remove(key, unless=lambda: self.verify(key) is None)

    # -- writing -------------------------------------------------------------------------------------

    def store(self, key: str, tmp_out: Path, meta: dict[str, object], hasher: Hasher) -> Path:
        """Move ``tmp_out`` (a step's files) into the entry ``key``; returns the entry's ``out/``.

        When a valid entry of ``key`` already exists (another build stored it first), it is kept, ours
        is dropped, and ``meta`` is updated in place to the kept entry's metadata so that the caller
        describes the files it gets. Raises :class:`CacheFull` on a full disk.
        """
        return self._store(key, tmp_out, meta, hasher, push=True)

    def _store(self, key: str, tmp_out: Path, meta: dict[str, object], hasher: Hasher, push: bool) -> Path:
        entry = self.entry(key)
        staging: Path | None = None
        trash: Path | None = None
        try:
            staging = self.mkdtemp("stage")
            shutil.move(tmp_out, staging / "out")  # a rename: the runner's scratch is under the root
            record = EntryRecord(key, meta, self._describe(staging / "out", hasher))
            (staging / ENTRY_FILE).write_text(record.to_json())
            with shard_lock(entry.parent):
                kept = self._valid(key, hasher)
                if kept is not None:
                    log.debug("%s was stored by another build meanwhile: keeping that entry", key[:12])
                    if kept.meta != meta:
                        meta.clear()
                        meta.update(kept.meta)
                else:
                    if entry.exists():
                        trash = self._to_trash(entry)
                    os.rename(staging, entry)
                    staging = None
                    self._check(entry, record, hasher, trust_stats=True)  # downstream reads: no re-hash
        except OSError as exc:
            if disk_full(exc):
                raise CacheFull(self.root, exc) from exc
            raise
        finally:
            for folder in (staging, trash):
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.utime(entry)
        if push and self.remote is not None:
            self.remote.push(key, entry, self.record(key))
        return entry / "out"

    def _valid(self, key: str, hasher: Hasher) -> EntryRecord | None:
        try:
            record = self.record(key)
        except (OSError, ValueError):
            return None
        return record if self._check(self.entry(key), record, hasher, trust_stats=True)[0] is None else None

    def _describe(self, out: Path, hasher: Hasher) -> dict[str, OutputRecord]:
        described = {}
        for path in sorted(out.rglob("*")):
            if path.is_file():
                st = path.stat()
                described[path.relative_to(out).as_posix()] = OutputRecord(
                    hasher.file(path), st.st_size, st.st_mtime_ns
                )
        return described

    def remove(self, key: str, unless: Callable[[], bool] | None = None) -> bool:
        """Remove the entry ``key`` (under its shard's lock) unless ``unless()``, asked under that lock,
        says to keep it; True when it was removed."""
        entry = self.entry(key)
        trash = None
        with shard_lock(entry.parent):
            if not entry.exists() or (unless is not None and unless()):
                return False
            trash = self._to_trash(entry)
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def _to_trash(self, entry: Path) -> Path:
        """Move a whole entry out of ``steps/`` in one rename (readers then miss it, never see half)."""
        trash = self.mkdtemp("trash")
        os.rename(entry, trash / "entry")
        return trash

    def disk_full_error(self, exc: BaseException) -> CacheFull | None:
        """A :class:`CacheFull` naming this cache when ``exc`` (or an exception it was raised from) is a
        full disk: ENOSPC or EDQUOT, or an OSError without errno while the cache's disk has less than
        :data:`LOW_SPACE_BYTES` free. None otherwise. For the runner: a step that filled the disk fails
        with this instead of the tool's own words."""
        seen: BaseException | None = exc
        while seen is not None:
            if isinstance(seen, OSError) and (disk_full(seen) or (seen.errno is None and self._low_space())):
                return CacheFull(self.root, seen)
            seen = seen.__cause__ or seen.__context__
        return None

    def _low_space(self) -> bool:
        try:
            return shutil.disk_usage(self.root).free < LOW_SPACE_BYTES
        except OSError:
            return False

    def mkdtemp(self, kind: str = "step") -> Path:
        """A new empty folder ``<root>/tmp/<lease>-<kind>-<random>`` owned by this process's lease:
        removed by the next build if this process dies, never while it lives. For a step's scratch
        folder (``kind="step"``) so that it is on the cache's file system and stores by a rename.
        Raises :class:`CacheFull` on a full disk."""
        try:
            lease = self._take_lease(required=True)
            assert lease is not None
            (self.root / TMP_DIR).mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix=f"{lease.id}-{kind}-", dir=self.root / TMP_DIR))
        except OSError as exc:
            if disk_full(exc):
                raise CacheFull(self.root, exc) from exc
            raise

    def _take_lease(self, required: bool) -> Lease | None:
        """This process's lease on the cache, taken (and the leftovers of dead builds reaped) on first
        use. Without ``required``, a cache that cannot be written is only logged: reading still works."""
        if self._lease is None:
            if self._read_only and not required:
                return None
            try:
                self._lease = Lease(self.root)
            except OSError as exc:
                if required:
                    raise
                log.debug("no lease on %s (%s): read-only use", self.root, exc)
                self._read_only = True
                return None
            self._reaped = reap(self.root, self._lease)
        return self._lease

    def reap(self) -> list[Path]:
        """Remove the temporary folders of builds that died (see :func:`packager.cache_lease.reap`)."""
        if not self.root.is_dir():
            return []  # nothing to reap, and a look must not create a cache
        if self._lease is None and not self._read_only:
            self._take_lease(required=False)  # taking the lease reaps
            return self._reaped
        return reap(self.root, self._lease)

    # -- the remote layer ----------------------------------------------------------------------------

    def _from_remote(self, key: str, hasher: Hasher) -> dict[str, object] | None:
        if self.remote is None or not self.remote.enabled:
            return None
        fetch = self.mkdtemp("fetch")
        try:
            record = self.remote.fetch(key, fetch / "out")
            if record is None:
                return None
            meta = dict(record.meta)
            self._store(key, fetch / "out", meta, hasher, push=False)
            self.remote.mark_pushed(self.entry(key))
            log.info("%s: taken from the shared cache %s", key[:12], self.remote.url)
            return meta
        finally:
            shutil.rmtree(fetch, ignore_errors=True)

    # -- last runs -----------------------------------------------------------------------------------

    def last_run(self, name: str) -> dict[str, object] | None:
        path = self.root / "last" / f"{_safe(name)}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def remember(self, name: str, payload: dict[str, object]) -> None:
        """Record a step's key inputs for the next run's reason. Raises :class:`CacheFull`."""
        path = self.root / "last" / f"{_safe(name)}.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(payload, sort_keys=True, default=str))
        except OSError as exc:
            if disk_full(exc):
                raise CacheFull(self.root, exc) from exc
            raise


def open_cache(build: BuildSpec) -> Cache:
    """The cache a build uses: its working folder, backed by the shared URL when ``[build].cache`` is
    one. Raises ConfigError when the URL's fsspec backend is unknown or not installed."""
    remote = None
    if build.shared_cache is not None:
        from packager.remote_cache import RemoteCache

        remote = RemoteCache(build.shared_cache)
    return Cache(build.working_cache, remote)
