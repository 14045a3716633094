"""Who owns a temporary folder in the step cache, and the per-shard locks that serialize writers.

A build (each process that writes to a cache) holds a *lease*: an exclusive ``flock`` on
``<root>/locks/<lease>.lock``, taken when it first touches the cache and released by the kernel when
the process dies, however it dies (SIGKILL included). Its temporary folders are named
``<root>/tmp/<lease>-<kind>-<random>``, so another build can tell the folders of a dead process (its
lock can be taken) from those of a live one (it cannot), and removes only the former.

``flock`` locks belong to the open file, so forked worker processes share their parent's lease: the
folders stay protected while any of them lives. Linux only (``fcntl``), like the rest of packager's
build host support; on NFS, Linux maps ``flock`` to POSIX byte-range locks the server arbitrates.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import shutil
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

LOCKS_DIR = "locks"
TMP_DIR = "tmp"
LEGACY_TMP_PREFIX = ".tmp-"
"""Scratch folders made directly in the cache root (``tempfile.mkdtemp(prefix=".tmp-")``) carry no
lease; they are removed only when no other build holds a lease on the cache (see :func:`reap`)."""


class Lease:
    """An exclusive ``flock`` on ``<root>/locks/<id>.lock`` for the life of this object (or process).

    Raises:
        OSError: the cache root cannot be written (read-only, full, no permission).
    """

    def __init__(self, root: Path) -> None:
        locks = root / LOCKS_DIR
        locks.mkdir(parents=True, exist_ok=True)
        self.id = f"{os.getpid()}x{secrets.token_hex(4)}"
        # Locked under a temporary name and renamed into place: a reaper only looks at *.lock files, so
        # it can never see this one in the instant between its creation and its flock.
        pending = locks / f".{self.id}.new"
        fd = os.open(pending, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": os.uname().nodename}).encode())
            os.rename(pending, locks / f"{self.id}.lock")
        except BaseException:
            os.close(fd)
            pending.unlink(missing_ok=True)
            raise
        self._fd = fd
        self._finalizer = weakref.finalize(self, os.close, fd)
        self.pid = os.getpid()

    def release(self) -> None:
        """Give the lease up now (closing the file drops the lock); its lock file is reaped later."""
        self._finalizer()


def _lease_of(name: str) -> str | None:
    """The lease id a ``tmp/`` folder name starts with (``<pid>x<hex>-<kind>-<random>``)."""
    head = name.split("-", 1)[0]
    pid, _, token = head.partition("x")
    return head if pid.isdigit() and len(token) == 8 else None


@contextlib.contextmanager
def _dead_lock(path: Path) -> Iterator[bool]:
    """Yield True while holding the lock of a lease whose owner is gone (the lock could be taken),
    False when a live process holds it. A missing lock file means its lease was already reaped."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


def reap(root: Path, own: Lease | None) -> list[Path]:
    """Remove the temporary folders of builds that died, and their lock files; returns what it removed.

    A folder under ``tmp/`` goes when its lease's lock can be taken. A legacy ``.tmp-*`` folder in the
    root goes only when no other lease is alive: the names are listed *before* the leases are checked,
    and a build takes its lease before it makes any scratch folder, so a folder of a build that starts
    meanwhile is either not listed or has a live lease that was seen.
    """
    removed: list[Path] = []
    try:
        legacy = [p for p in root.iterdir() if p.name.startswith(LEGACY_TMP_PREFIX) and p.is_dir()]
    except FileNotFoundError:
        return removed
    owned: dict[str, list[Path]] = {}
    with contextlib.suppress(FileNotFoundError):
        for child in (root / TMP_DIR).iterdir():
            lease = _lease_of(child.name)
            if lease is not None:
                owned.setdefault(lease, []).append(child)
    locks = root / LOCKS_DIR
    held: set[str] = set()
    with contextlib.suppress(FileNotFoundError):
        for path in locks.iterdir():
            if path.name.endswith(".lock"):
                held.add(path.name.removesuffix(".lock"))
            elif path.name.endswith(".new") and _older_than(path, 60.0):  # died while taking a lease
                with _dead_lock(path) as dead:
                    if dead:
                        path.unlink(missing_ok=True)
    others_alive = False
    for lease in sorted(held | set(owned)):
        if own is not None and lease == own.id:
            continue
        lock = locks / f"{lease}.lock"
        with _dead_lock(lock) as dead:
            if not dead:
                others_alive = True
                continue
            for folder in owned.get(lease, []):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            lock.unlink(missing_ok=True)  # while still holding it: nobody can mistake it for live
    if not others_alive:
        for folder in legacy:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    if removed:
        log.info("removed %d temporary folder(s) left in %s by builds that died", len(removed), root)
    return removed


@contextlib.contextmanager
def shard_lock(shard: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``<shard>/.lock``: storing, replacing and removing the entries of one
    shard (``steps/<key[:2]>``) happen one process at a time. Readers take no lock: an entry appears
    by one rename and is never modified in place."""
    shard.mkdir(parents=True, exist_ok=True)
    fd = os.open(shard / ".lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def disk_full(exc: BaseException) -> bool:
    """The error is ENOSPC (no space) or EDQUOT (over quota)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
