"""swiftc in a Debian trixie chroot and the compiled stub modules, built once per machine, shared by tests.

DESIGN §7: Debian trixie packages Swift 6.0.3 (``swiftlang``). ``debootstrap`` installs a minimal trixie
with it in ``~/.cache/packager-tests/swift-trixie`` (``PACKAGER_TEST_CACHE`` moves the cache; ~45 s, 3.1 GB
here). The build goes to a temporary folder renamed into place, under a file lock, so two pytest processes
neither build twice nor use a half-built root. The stubs in ``tests/swift/stubs`` (CoreML, CoreVideo,
CoreGraphics and ONNX Runtime's Objective-C API as Swift sees them) are compiled with ``swiftc -emit-module``
into the chroot, in a folder named after their content and the compiler version.

Every swiftc and every compiled program runs as ``unshare --mount --pid --fork --kill-child
--mount-proc=<root>/proc chroot <root> ...``: swiftc needs /proc (without it the driver dies with SIGILL),
and a /proc mounted in a private mount namespace vanishes with the namespace, so nothing stays mounted on
the host, not even after a timeout kill.

Only what cannot be fixed here skips (not root, neither debootstrap nor apt-get, mirror unreachable); a
failing build is a test error with its output.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("swiftlang", "libc6-dev")
"""swiftlang: swiftc, the runtime, swift-corelibs-foundation. libc6-dev: crt1.o and libc.so to link run()."""
RUNTIME_LIBS = "/usr/libexec/swift/lib/swift/linux"
"""Debian keeps the Swift runtime outside the loader's search path: swiftc and every program need it here."""
STUBS = Path(__file__).parent / "stubs"
STUB_MODULES = (
    ("CoreVideo", "CoreVideo"),
    ("CoreGraphics", "CoreGraphics"),
    ("CoreML", "CoreML"),
    ("onnxruntime_objc", "onnxruntime_objc"),
    ("OnnxRuntimeBindings", "onnxruntime_objc"),
)
"""(module, stub folder) in dependency order. ONNX Runtime's Objective-C API is imported as
``onnxruntime_objc`` from the CocoaPods pod and as ``OnnxRuntimeBindings`` from the Swift package: one stub,
both names."""
LANGUAGE = ("-swift-version", "5")
"""Swift 5 language mode, swiftc 6.0's default (Swift 6 mode and its strict concurrency are opt-in)."""
MARKER = ".packager-swift.json"
"""Written into the root last, before the rename: a root without it is not finished."""


def cache_root() -> Path:
    """Same cache as tests/kotlin/toolchain.py."""
    return Path(os.environ.get("PACKAGER_TEST_CACHE", Path.home() / ".cache" / "packager-tests"))


class SwiftBuildError(RuntimeError):
    """run() could not compile its sources; the message holds swiftc's diagnostics."""


@dataclass(frozen=True)
class SwiftToolchain:
    root: Path
    """The trixie chroot."""
    stubs: Path
    """Compiled stub modules (``<Module>.swiftmodule``), a folder inside ``root``."""
    version: str
    """``swiftc --version``'s first line, e.g. ``Swift version 6.0.3 (swift-6.0.3-RELEASE)``."""

    def typecheck(self, sources: Sequence[Path]) -> subprocess.CompletedProcess:
        """``swiftc -typecheck`` of ``sources`` together against the stub modules; stdout/stderr are text.

        Without a ``main.swift`` among them the files are library code (``-parse-as-library``). Diagnostics
        name the host paths of ``sources``; notes about stub declarations quote the stub module's interface.
        """
        library = [] if "main.swift" in {path.name for path in sources} else ["-parse-as-library"]
        with self._scratch(sources) as inner:
            names = [f"{inner}/{path.name}" for path in sources]
            cmd = ["swiftc", "-typecheck", *LANGUAGE, "-I", self._inner(self.stubs), *library, *names]
            done = _in_chroot(self.root, cmd, inner, timeout=300)
        out, err = (self._host_paths(text, inner, sources) for text in (done.stdout, done.stderr))
        return subprocess.CompletedProcess(cmd, done.returncode, out, err)

    def run(
        self, sources: Sequence[Path], args: Sequence[str] = (), stdin: bytes | None = None
    ) -> subprocess.CompletedProcess:
        """Compile ``sources`` (with a ``main.swift``; Foundation only, no stubs) and run the program.

        It runs inside the chroot, where host files are not visible: pass data through ``stdin``. Returns the
        run's CompletedProcess with bytes stdout/stderr; raises SwiftBuildError with the diagnostics if the
        sources do not compile.
        """
        with self._scratch(sources) as inner:
            names = [f"{inner}/{path.name}" for path in sources]
            compile_cmd = ["swiftc", "-O", *LANGUAGE, "-o", f"{inner}/main", *names]
            build = _in_chroot(self.root, compile_cmd, inner, timeout=600)
            if build.returncode != 0:
                text = self._host_paths(build.stdout + build.stderr, inner, sources)
                raise SwiftBuildError(f"swiftc failed ({build.returncode}):\n{text}")
            cmd = [f"{inner}/main", *args]
            done = _in_chroot(self.root, cmd, inner, timeout=600, stdin=stdin, text=False)
            return subprocess.CompletedProcess(cmd, done.returncode, done.stdout, done.stderr)

    @contextmanager
    def _scratch(self, sources: Sequence[Path]) -> Iterator[str]:
        """A fresh folder in the chroot's /tmp holding copies of ``sources`` (basenames must be distinct)."""
        names = [path.name for path in sources]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"need Swift sources with distinct file names, got {[str(p) for p in sources]}")
        folder = Path(tempfile.mkdtemp(prefix="packager-", dir=self.root / "tmp"))
        try:
            for path in sources:
                shutil.copyfile(path, folder / path.name)
            yield self._inner(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _inner(self, path: Path) -> str:
        return "/" + str(path.relative_to(self.root))

    @staticmethod
    def _host_paths(text: str, inner: str, sources: Sequence[Path]) -> str:
        for path in sources:
            text = text.replace(f"{inner}/{path.name}", str(path))
        return text


def _in_chroot(
    root: Path, argv: Sequence[str], cwd: str, timeout: float, stdin: bytes | None = None, text: bool = True
) -> subprocess.CompletedProcess:
    """Run ``argv`` in the chroot with a clean environment, in private mount and PID namespaces."""
    namespace = ["unshare", "--mount", "--pid", "--fork", "--kill-child", f"--mount-proc={root}/proc"]
    env = [
        "PATH=/usr/bin:/bin",
        f"LD_LIBRARY_PATH={RUNTIME_LIBS}",
        "HOME=/tmp",
        f"TMPDIR={cwd}",
        "LANG=C.UTF-8",
    ]
    cmd = [*namespace, "chroot", str(root), "/usr/bin/env", "-i", "-C", cwd, *env, *argv]
    done = subprocess.run(cmd, input=stdin or b"", capture_output=True, timeout=timeout, check=False)
    if not text:
        return done
    out, err = (stream.decode(errors="replace") for stream in (done.stdout, done.stderr))
    return subprocess.CompletedProcess(cmd, done.returncode, out, err)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _marker(root: Path) -> dict | None:
    try:
        meta = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return meta if (root / "usr" / "bin" / "swiftc").is_file() else None


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4] for line in handle]
    return [point for point in points if point == prefix or point.startswith(prefix + "/")]


def _remove_tree(path: Path) -> None:
    """rmtree, but never through a mount (a leftover /proc or /dev bind would be walked into)."""
    mounted = _mounts_under(path)
    if mounted:
        raise RuntimeError(f"{path} still has mounts ({', '.join(mounted)}): umount them, then delete it")
    shutil.rmtree(path)


def _skip_unless_buildable() -> None:
    if os.geteuid() != 0:
        pytest.skip("the Swift chroot needs root (debootstrap, chroot, unshare); run the tests as root")
    missing = [tool for tool in ("unshare", "chroot") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not on PATH: the Swift tests run swiftc in a chroot")
    if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
        pytest.skip(
            "neither debootstrap nor apt-get is installed: cannot build the Debian trixie Swift chroot"
        )
    host = urlsplit(MIRROR).hostname or ""
    if not any(os.environ.get(name) for name in ("http_proxy", "HTTP_PROXY")):
        try:
            socket.create_connection((host, 80), timeout=10).close()
        except OSError as error:
            pytest.skip(f"{host}:80 unreachable ({error}): cannot download the Debian trixie Swift chroot")


def _checked(cmd: Sequence[str], timeout: float) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )


def _install_debootstrap() -> None:
    if shutil.which("debootstrap") is not None:
        return
    install = ["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"]
    if subprocess.run(install, capture_output=True, timeout=600, check=False).returncode != 0:
        _checked(["apt-get", "update"], timeout=600)
        _checked(install, timeout=600)


def _build_root(cache: Path) -> Path:
    """Debootstrap trixie with swiftlang into ``<cache>/swift-trixie`` once (temp folder, marker, rename)."""
    root = cache / f"swift-{SUITE}"
    if _marker(root):
        return root
    with _locked(cache / f"swift-{SUITE}.lock"):
        if _marker(root):
            return root
        _skip_unless_buildable()
        _install_debootstrap()
        for stale in cache.glob(f"swift-{SUITE}.build-*"):
            _remove_tree(stale)  # left by a killed build; we hold the lock, so nobody is writing it
        scratch = Path(tempfile.mkdtemp(prefix=f"swift-{SUITE}.build-", dir=cache))
        try:
            # In a private mount namespace: the /proc and /sys debootstrap mounts in the target go with it.
            include = ",".join(PACKAGES)
            boot = ["debootstrap", "--variant=minbase", f"--include={include}", SUITE, str(scratch), MIRROR]
            _checked(["unshare", "--mount", *boot], timeout=1800)
            probe = _in_chroot(scratch, ["swiftc", "--version"], "/tmp", timeout=120)
            if probe.returncode != 0:
                raise RuntimeError(
                    f"swiftc --version fails in the new chroot:\n{probe.stdout}\n{probe.stderr}"
                )
            version = (probe.stdout or probe.stderr).strip().splitlines()[0]
            meta = {"suite": SUITE, "packages": list(PACKAGES), "mirror": MIRROR, "version": version}
            (scratch / MARKER).write_text(json.dumps(meta, indent=1) + "\n")
        except BaseException:
            _remove_tree(scratch)
            raise
        if root.exists():
            _remove_tree(root)  # an unfinished root without a marker
        os.replace(scratch, root)
    return root


def _compile_stubs(root: Path, version: str) -> Path:
    """swiftc -emit-module each stub once per (content, compiler): ``<root>/opt/packager-stubs/<sha256>``."""
    digest = hashlib.sha256(json.dumps([version, STUB_MODULES]).encode())
    for folder in sorted({folder for _, folder in STUB_MODULES}):
        digest.update(folder.encode() + b"\0" + (STUBS / folder / f"{folder}.swift").read_bytes() + b"\0")
    target = root / "opt" / "packager-stubs" / digest.hexdigest()[:16]
    if target.is_dir():
        return target
    with _locked(root.parent / f"swift-{SUITE}-stubs.lock"):
        if target.is_dir():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=target.parent))
        inner = "/" + str(scratch.relative_to(root))
        try:
            shutil.copytree(STUBS, scratch / "src", ignore=shutil.ignore_patterns("*.md"))
            for module, folder in STUB_MODULES:
                source = f"{inner}/src/{folder}/{folder}.swift"
                out = f"{inner}/{module}.swiftmodule"
                cmd = ["swiftc", "-emit-module", "-parse-as-library", "-module-name", module]
                done = _in_chroot(
                    root, [*cmd, "-emit-module-path", out, "-I", inner, source], inner, timeout=300
                )
                if done.returncode != 0:
                    raise RuntimeError(f"swiftc -emit-module {module} failed:\n{done.stdout}\n{done.stderr}")
            shutil.rmtree(scratch / "src")
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        os.replace(scratch, target)
    return target


def toolchain() -> SwiftToolchain:
    """Build (once) and return the Swift toolchain; ``pytest.skip`` when the chroot cannot be built here."""
    started = time.perf_counter()
    root = _build_root(cache_root())
    if os.geteuid() != 0:
        pytest.skip("running swiftc in the chroot needs root (chroot, unshare); run the tests as root")
    meta = _marker(root) or {}
    version = str(meta.get("version", ""))
    chain = SwiftToolchain(root=root, stubs=_compile_stubs(root, version), version=version)
    print(f"swift toolchain ({version}) ready in {time.perf_counter() - started:.1f} s")
    return chain


BUNDLE_ACCESSOR = """import Foundation

// What SwiftPM generates for a target with resources (resource_bundle_accessor.swift).
extension Foundation.Bundle {
    static let module = Bundle.main
}
"""


def bundle_accessor(folder: Path) -> Path:
    """Write the ``Bundle.module`` accessor SwiftPM generates for a target with resources into
    ``folder``; typecheck it with the package's sources, which use ``Bundle.module``."""
    path = folder / "resource_bundle_accessor.swift"
    path.write_text(BUNDLE_ACCESSOR)
    return path
