"""A staging folder whose writer was really killed, for the tests of the reaping of killed writers'
leftovers (dist/ bundles and published releases)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from packager.staging import make_staging
staging = make_staging(Path(sys.argv[1]), sys.argv[2])
(staging / "half-written").write_text("x")
print(staging, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_writers_staging(parent: Path, name: str) -> Path:
    """The staging folder of ``parent/name`` made by a process then SIGKILLed (so its pid is dead)."""
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(parent), name], capture_output=True, text=True
    )
    assert done.returncode == -9, done.stderr
    return Path(done.stdout.strip())
