"""Hidden staging folders that are renamed into place when complete, and the removal of the ones whose
writer was killed.

A bundle (``dist/``) and a published release (``publish --to``) are both written into a sibling
``.<name>.staging-<host>-<pid>-<random>`` and renamed into place, so a reader never sees half a folder.
A writer killed by SIGKILL cannot remove its staging folder; the next writer of the same name does, when
the folder's host is this host and its pid no longer runs. The host is part of the name because the
folder may be on a filesystem other machines also write to (an NFS release share), where a pid says
nothing about a process elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from pathlib import Path


def make_staging(parent: Path, name: str) -> Path:
    """Create and return an empty staging folder for ``parent/name``, readable by others (mode 0755).

    Raises:
        OSError: ``parent`` cannot be written.
    """
    prefix = f".{name}.staging-{_host()}-{os.getpid()}-"
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a bundle or release is meant to be read by others
    return staging


def reap_dead_staging(parent: Path, name: str) -> list[Path]:
    """Remove the staging folders of ``parent/name`` left by killed writers on this host; returns them.
    A live writer's folder, and any folder from another host, is kept."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.staging-(.+)-(\d+)-[^-]*$")
    removed = []
    for folder in parent.glob(f".{name}.staging-*"):
        match = pattern.match(folder.name)
        if match is None or match.group(1) != _host() or not folder.is_dir() or _alive(int(match.group(2))):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True
