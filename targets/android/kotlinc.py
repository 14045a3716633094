"""The bundle's generated Kotlin compiled to JVM bytecode, for the classes.jar of the published AAR.

An Android build compiles a library against ``android.jar``, a compile-only stub of the platform API, and
its dependencies' API jars. Here kotlinc compiles the module's Kotlin against hand-written Java stubs of the
few ``android.*``, ``ai.onnxruntime.*`` and ``org.tensorflow.lite.*`` classes the loaders call
(``stubs/``, each citing the API page it copies), passed as Java *sources*: kotlinc resolves the Java
sources it is given without compiling them (Kotlin docs, "Mixing Java and Kotlin in one project"), so no
stub class lands in the output and no javac is needed. The tests compile the same module against the same
stubs (tests/kotlin/toolchain.py).

kotlinc is taken from ``--kotlinc PATH``, else ``$KOTLINC``, else ``kotlinc`` on PATH; it needs a JDK 17+
(``java`` on PATH). ``npm install kotlin-compiler@2.4.20`` gives one at
``node_modules/kotlin-compiler/bin/kotlinc`` (its ``.bin/`` entry is the JavaScript compiler).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from packager.errors import ConversionError, StepError

STUBS = Path(__file__).parent / "stubs"
STEP = "publish android maven"
LANGUAGE_VERSION = "2.2"
"""``-language-version`` and ``-api-version``. An app's Kotlin compiler reads class metadata at most one
version newer than itself, and a library compiled against a newer stdlib API needs that stdlib: 2.2 is the
oldest version kotlinc 2.4 does not deprecate ("language version 2.0 is deprecated ... Update the version
to 2.2"), so apps on Kotlin 2.1 and newer can use the AAR."""
KOTLIN_STDLIB = ("org.jetbrains.kotlin", "kotlin-stdlib", "2.2.0")
"""The stdlib the compiled classes need (``-api-version`` :data:`LANGUAGE_VERSION`): the Kotlin Gradle plugin
adds it to every Kotlin module's ``api`` dependencies, so the generated build.gradle.kts does not name it."""
JAVA_OPTS = "-Xmx1G -XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
"""DESIGN §7: a small heap and the C1 compiler only; kotlinc starts in ~5 s instead of ~15 on 2 cores."""
TIMEOUT_S = 900
_VERSION = re.compile(r"kotlinc-jvm (\S+)")


@dataclass(frozen=True)
class Compiled:
    classes: Path
    """Folder of ``.class`` files and ``META-INF/<module>.kotlin_module``."""
    kotlinc_version: str


def find_kotlinc(given: str | None) -> Path:
    """kotlinc from ``given`` (``--kotlinc``), ``$KOTLINC`` or PATH.

    Raises:
        StepError: none of them names an executable file; the message says what to install and that
            ``--no-maven`` publishes without the Maven repository.
    """
    install = (
        "install a Kotlin compiler and a JDK 17 (e.g. `npm install kotlin-compiler@2.4.20`, then pass "
        "--kotlinc node_modules/kotlin-compiler/bin/kotlinc or set KOTLINC), or pass --no-maven to publish "
        "without the Android Maven repository"
    )
    for origin, value in (("--kotlinc", given), ("KOTLINC", os.environ.get("KOTLINC"))):
        if value:
            path = Path(value).expanduser()
            if path.is_file() and os.access(path, os.X_OK):
                return path
            raise StepError(STEP, f"{origin} {value}: not an executable file", install)
    found = shutil.which("kotlinc")
    if found is None:
        raise StepError(STEP, "kotlinc not found (no --kotlinc, no $KOTLINC, none on PATH)", install)
    return Path(found)


def compile_module(
    kotlinc: Path, sources: list[Path], module_name: str, jvm_target: str, out: Path
) -> Compiled:
    """``kotlinc -d out`` over ``sources`` against :data:`STUBS`; ``module_name`` names the
    ``.kotlin_module`` file (Gradle uses the module's name too).

    Raises:
        ConversionError: kotlinc failed or timed out (its first error lines quoted).
    """
    stubs = sorted(STUBS.rglob("*.java"))
    cmd = [
        str(kotlinc),
        "-version",  # prints "info: kotlinc-jvm <version> (JRE ...)" to stderr, then compiles
        "-d", str(out),
        "-jvm-target", jvm_target,
        "-module-name", module_name,
        "-language-version", LANGUAGE_VERSION,
        "-api-version", LANGUAGE_VERSION,
        "-no-reflect",
        *map(str, sources),
        *map(str, stubs),
    ]  # fmt: skip
    env = {**os.environ, "JAVA_OPTS": os.environ.get("JAVA_OPTS", JAVA_OPTS)}
    fix = (
        "the generated Kotlin must compile against the API stubs: report it with the bundle's android/ "
        "folder, or pass --no-maven to publish without the Maven repository"
    )
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ConversionError(STEP, "kotlinc", f"no result after {TIMEOUT_S} s", fix) from None
    except OSError as exc:
        raise ConversionError(STEP, "kotlinc", f"cannot run {kotlinc} ({exc.strerror})", fix) from None
    match = _VERSION.search(done.stderr)
    version = match.group(1) if match else "unknown"
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "error:" in line] or done.stderr.splitlines()
        problem = "; ".join(errors[:3]) or f"exit code {done.returncode}"
        raise ConversionError(STEP, f"kotlinc {version}", problem, fix)
    return Compiled(classes=out, kotlinc_version=version)
