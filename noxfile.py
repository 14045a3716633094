"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s bench``, ``nox -s recipes``,
``nox -s android``, ``nox -s ios``, ``nox -s swift``, ``nox -s build_system``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The full suite, including the e2e build of the real SFace example (``-m 'not e2e'`` to skip it)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6,<1")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Measured figures for the SFace example: sizes, cosine, AUC drop, flips, latency ratios, build times."""
    session.install("-e", ".[test]")
    session.run("python", "examples/faceid/prepare_data.py")
    session.run("python", "bench/faceid.py", *session.posargs)


@nox.session(python="3.11")
def recipes(session: nox.Session) -> None:
    """packager's recipes beside the raw onnxruntime / onnxconverter-common calls on SFace, one run:
    size ratio, mean/min cosine on the unseen evaluation faces, default-kernel p50 ratio to FP32."""
    session.install("-e", ".[test]")
    session.run("python", "examples/faceid/prepare_data.py")
    session.run("python", "bench/recipes.py", *session.posargs)


@nox.session(python="3.11")
def android(session: nox.Session) -> None:
    """The Android artifacts of the example: sizes, accuracy vs FP32, coverage, build and Kotlin times."""
    session.install("-e", ".[test]")
    session.run("python", "examples/faceid/prepare_data.py")
    session.run("python", "bench/android.py", *session.posargs)


@nox.session(python="3.11")
def ios(session: nox.Session) -> None:
    """The iOS artifacts of the example: sizes, weight dtypes, SavedModel vs FP32, CoreML EP coverage,
    the iOS part of a cold build and the Swift typecheck time."""
    session.install("-e", ".[test]")
    session.run("python", "examples/faceid/prepare_data.py")
    session.run("python", "bench/ios.py", *session.posargs)


@nox.session(python="3.11")
def build_system(session: nox.Session) -> None:
    """The build system on the example, through the CLI: cold build at --jobs 1 vs --jobs 2, overhead
    over the steps' own work, no-op and iOS-only rebuilds, publish; ``-- --raw`` adds the same tools
    run directly (bench/raw_tools.py)."""
    session.install("-e", ".[test]")
    session.run("python", "examples/faceid/prepare_data.py")
    session.run("python", "bench/build_system.py", *session.posargs)


@nox.session(python="3.11")
def swift(session: nox.Session) -> None:
    """The generated Swift checked with a real compiler: Debian trixie's swiftc in a chroot built once per
    machine (``~/.cache/packager-tests/swift-trixie``; needs root and debootstrap), typechecked against
    stubs of the Core ML, onnxruntime and CoreVideo/CoreGraphics APIs, preprocessing run against Python."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/test_swift_toolchain.py", "tests/test_ios_swift.py", *session.posargs)
