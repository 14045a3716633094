"""The step cache: content-addressed entries on local disk, and the hashing that keys them.

An entry is ``<root>/steps/<key[:2]>/<key>/`` holding ``out/`` (the step's files) and ``entry.json``
(the sha256 of every output file and the step's metadata). Entries are written into a staging folder
and renamed into place, so an interrupted step never leaves a half entry, and a corrupt entry is a
logged miss, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from packager.errors import DataError

log = logging.getLogger(__name__)


class Hasher:
    """sha256 of files and folders, memoized by (path, size, mtime) for the life of one build."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, int, int], str] = {}

    def file(self, path: Path) -> str:
        st = path.stat()
        memo_key = (str(path), st.st_size, st.st_mtime_ns)
        if memo_key not in self._memo:
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            self._memo[memo_key] = digest.hexdigest()
        return self._memo[memo_key]

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


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def entry(self, key: str) -> Path:
        return self.root / "steps" / key[:2] / key

    def load(self, key: str, hasher: Hasher) -> dict[str, object] | None:
        entry = self.entry(key)
        record = entry / "entry.json"
        if not record.exists():
            return None
        try:
            data = json.loads(record.read_text())
            for rel, digest in data["outputs"].items():
                if hasher.file(entry / "out" / rel) != digest:
                    raise ValueError(f"{rel} changed")
            return data["meta"]
        except (OSError, ValueError, KeyError) as exc:
            log.warning("cache entry %s is corrupt (%s); rebuilding it", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
            return None

    def store(self, key: str, tmp_out: Path, meta: dict[str, object], hasher: Hasher) -> Path:
        entry = self.entry(key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        outputs = {
            str(p.relative_to(tmp_out)): hasher.file(p) for p in sorted(tmp_out.rglob("*")) if p.is_file()
        }
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:8]}-", dir=entry.parent))
        tmp_out.rename(staging / "out")
        (staging / "entry.json").write_text(
            json.dumps({"outputs": outputs, "meta": meta}, sort_keys=True, indent=1)
        )
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(staging, entry)
        return entry / "out"

    def last_run(self, name: str) -> dict[str, object] | None:
        path = self.root / "last" / f"{_safe(name)}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def remember(self, name: str, payload: dict[str, object]) -> None:
        path = self.root / "last" / f"{_safe(name)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, sort_keys=True, default=str))
        os.replace(tmp, path)
