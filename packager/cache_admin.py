"""Looking after a working step cache: its size and entries (``packager cache``), a full re-hash
(``packager cache --verify``) and removing entries unused for a while (``packager clean --older-than``).

Removals take the entry's shard lock and move the entry out in one rename, so a build running at the
same time either finds the entry whole or misses it (and runs the step again).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from packager.cache import Cache
from packager.errors import ConfigError

AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> float:
    """Seconds in an age such as ``7d``, ``12h``, ``30m``, ``45s`` or ``1.5d``.

    Raises:
        ConfigError: not a non-negative number followed by one of the units s, m, h, d.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if match is None:
        raise ConfigError(
            "--older-than", [f"{text!r} is not an age: give a number and a unit s, m, h or d, e.g. 7d"]
        )
    return float(match.group(1)) * AGE_UNITS[match.group(2)]


def _size(folder: Path) -> int:
    """Bytes of the files under ``folder`` (symlinks not followed); 0 when it is gone."""
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


@dataclass(frozen=True)
class CacheSummary:
    root: Path
    shared: str | None
    """URL of the shared layer, when the build has one (not inspected: remote sizes cost requests)."""
    entries: int
    size_bytes: int
    """Bytes of the entries' files (outputs and records), not counting logs and temporary folders."""
    oldest_use: float | None
    """Seconds since the epoch of the least recently used entry's last use (None: no entries)."""
    newest_use: float | None


def summarize(cache: Cache) -> CacheSummary:
    """Count and size the entries of ``cache`` and their last uses (touched on every hit)."""
    uses: list[float] = []
    size = 0
    for key in cache.stored_keys():
        try:
            uses.append(cache.last_used(key))
        except OSError:  # removed meanwhile by a concurrent clean
            continue
        size += _size(cache.entry(key))
    url = cache.remote.url if cache.remote is not None else None
    return CacheSummary(cache.root, url, len(uses), size, min(uses, default=None), max(uses, default=None))


@dataclass(frozen=True)
class VerifyReport:
    checked: int
    removed: dict[str, str] = field(default_factory=dict)
    """Key -> what was wrong, for each entry removed as corrupt."""


def verify_all(cache: Cache) -> VerifyReport:
    """Re-hash every file of every entry (ignoring recorded stats) and remove the corrupt entries."""
    removed: dict[str, str] = {}
    checked = 0
    for key in cache.stored_keys():
        checked += 1
        problem = cache.verify(key)
        # Checked again under the shard lock: a build may have replaced the entry in the meantime.
        if problem is not None and cache.remove(key, unless=lambda key=key: cache.verify(key) is None):
            removed[key] = problem
    cache.reap()
    return VerifyReport(checked, removed)


@dataclass(frozen=True)
class CleanReport:
    removed: int
    freed_bytes: int
    kept: int


def clean_older_than(cache: Cache, seconds: float, now: float | None = None) -> CleanReport:
    """Remove the entries not used (stored or hit) for more than ``seconds``, and the temporary folders
    of builds that died. An entry a running build uses meanwhile is kept (its use is re-read under the
    shard lock)."""
    cutoff = (time.time() if now is None else now) - seconds
    removed = freed = kept = 0

    def used_since(key: str) -> bool:
        try:
            return cache.last_used(key) >= cutoff
        except OSError:
            return True  # already gone: nothing to remove

    for key in cache.stored_keys():
        if used_since(key):
            kept += 1
            continue
        size = _size(cache.entry(key))
        if cache.remove(key, unless=lambda key=key: used_since(key)):
            removed += 1
            freed += size
        else:
            kept += 1
    cache.reap()
    return CleanReport(removed, freed, kept)
