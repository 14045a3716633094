"""The bundle's Android module as a Maven repository, what an app resolves with
``maven { url = uri("file:///.../android/maven") }`` and ``implementation("<package>:<module>:<version>")``.

Layout, per Maven's repository layout (https://maven.apache.org/repository/layout.html), under the release's
``android/maven/``::

    <groupId as folders>/<artifactId>/maven-metadata.xml
    <groupId as folders>/<artifactId>/<version>/<artifactId>-<version>.aar
                                               /<artifactId>-<version>-sources.jar
                                               /<artifactId>-<version>.pom

with ``.md5``, ``.sha1``, ``.sha256`` and ``.sha512`` beside each file (the four Gradle's ``maven-publish``
writes; Gradle checks the sha1 on download, Maven Central asks for md5 and sha1). groupId is
``[android].package``, artifactId the module name, version ``[project].version``.

The AAR holds what Android's AAR format lists (https://developer.android.com/studio/projects/android-library
#aar-contents): ``AndroidManifest.xml`` (package = the namespace, ``minSdkVersion``), ``classes.jar`` (the
loaders compiled by kotlinc, :mod:`targets.android.kotlinc`), ``R.txt`` (empty: the module has no
resources), ``proguard.txt`` (the module's consumer-rules.pro, as AGP packs ``consumerProguardFiles``),
``assets/`` (the models, as the module ships them) and AGP's
``META-INF/com/android/build/gradle/aar-metadata.properties`` (its defaults: format 1.0, minCompileSdk 1).

The namespace, minSdk, JVM target and every dependency come from the module's generated build.gradle.kts,
so the POM cannot disagree with the module an app builds from source. Dependencies map to POM scopes the
way Gradle's ``maven-publish`` maps them: ``api`` -> compile, ``implementation``/``runtimeOnly`` -> runtime.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packager.archive import EPOCH, FILE_MODE, UNIX
from packager.errors import StepError
from packager.target import PublishContext, ReleaseFiles
from targets.android.config import AndroidSpec
from targets.android.kotlinc import KOTLIN_STDLIB, STEP, compile_module, find_kotlinc
from targets.android.plan import PLATFORM, module_name

log = logging.getLogger(__name__)

REPOSITORY = f"{PLATFORM}/maven"
"""The Maven repository's root inside the release."""
CHECKSUMS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
POM_NS = "http://maven.apache.org/POM/4.0.0"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
SCOPES = {"api": "compile", "implementation": "runtime", "runtimeOnly": "runtime", "compileOnly": None}
"""Gradle configuration -> POM scope (None: not in the POM), as Gradle's maven-publish maps them."""
AAR_METADATA = (
    "aarFormatVersion=1.0\naarMetadataVersion=1.0\nminCompileSdk=1\nminAndroidGradlePluginVersion=1.0.0\n"
)
"""AGP's AarMetadataTask with its defaults; CheckAarMetadataTask requires the two format versions."""

_DEPENDENCY = re.compile(r'^(\w+)\("([^":\s]+):([^":\s]+):([^":\s]+)"\)$')


@dataclass(frozen=True)
class Dependency:
    group: str
    artifact: str
    version: str
    scope: str
    """POM scope: ``compile`` or ``runtime``."""


@dataclass(frozen=True)
class GradleModule:
    """What the generated build.gradle.kts says about the module."""

    namespace: str
    min_sdk: int
    jvm_target: str
    dependencies: tuple[Dependency, ...]


def read_build_file(path: Path) -> GradleModule:
    """The namespace, minSdk, JVM target and dependencies of a generated build.gradle.kts.

    Raises:
        StepError: a field is missing, or a line of ``dependencies {}`` is not ``<configuration>("g:a:v")``
            (a dependency this reader would otherwise leave out of the POM).
    """
    fix = "rebuild the bundle with this packager (the module's build file is generated)"
    text = path.read_text(encoding="utf-8")

    def field(pattern: str, what: str) -> str:
        found = re.search(pattern, text, re.MULTILINE)
        if found is None:
            raise StepError(STEP, f"{path}: no {what}", fix)
        return found.group(1)

    namespace = json.loads(field(r'^\s*namespace = (".*")\s*$', "namespace"))
    min_sdk = int(field(r"^\s*minSdk = (\d+)\s*$", "minSdk"))
    jvm_target = field(r"JvmTarget\.JVM_(\d+)", "Kotlin jvmTarget")
    block = re.search(r"^dependencies \{\n(.*?)^\}", text, re.MULTILINE | re.DOTALL)
    if block is None:
        raise StepError(STEP, f"{path}: no top-level dependencies block", fix)
    dependencies = []
    for line in block.group(1).splitlines():
        line = line.strip()
        if not line or line.startswith("//"):
            continue
        match = _DEPENDENCY.match(line)
        if match is None or match.group(1) not in SCOPES:
            raise StepError(STEP, f'{path}: dependency line {line!r} is not configuration("g:a:v")', fix)
        scope = SCOPES[match.group(1)]
        if scope is not None:
            dependencies.append(Dependency(*match.group(2, 3, 4), scope=scope))
    return GradleModule(namespace, min_sdk, jvm_target, tuple(dependencies))


def zip_bytes(entries: dict[str, bytes], first: tuple[str, ...] = ()) -> bytes:
    """A zip of ``entries`` with ``first`` leading and the rest sorted, with the fixed timestamp, modes and
    host of :mod:`packager.archive`."""
    buffer = io.BytesIO()
    names = [n for n in first if n in entries] + sorted(n for n in entries if n not in first)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in names:
            info = zipfile.ZipInfo(name, EPOCH)
            info.create_system = UNIX
            info.external_attr = FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, entries[name], compresslevel=9)
    return buffer.getvalue()


JAR_MANIFEST = "META-INF/MANIFEST.MF"


def _jar(files: dict[str, bytes]) -> bytes:
    """A jar: the manifest first (``java.util.jar.JarInputStream`` finds it only there)."""
    manifest = b"Manifest-Version: 1.0\r\nCreated-By: packager\r\n\r\n"
    return zip_bytes({JAR_MANIFEST: manifest, **files}, first=(JAR_MANIFEST,))


def _tree(folder: Path, suffix: str = "") -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob(f"*{suffix}"))
        if p.is_file()
    }


def android_manifest(module: GradleModule) -> bytes:
    """The library's AndroidManifest.xml as AGP merges it into an AAR: package and minSdkVersion only."""
    ns = "http://schemas.android.com/apk/res/android"
    ET.register_namespace("android", ns)
    root = ET.Element("manifest", {"package": module.namespace})
    ET.SubElement(root, "uses-sdk", {f"{{{ns}}}minSdkVersion": str(module.min_sdk)})
    ET.indent(root, space="    ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def pom(group: str, artifact: str, version: str, description: str, dependencies: list[Dependency]) -> bytes:
    """The POM (https://maven.apache.org/pom.html): packaging ``aar`` and the module's dependencies."""
    ET.register_namespace("", POM_NS)
    ET.register_namespace("xsi", XSI_NS)
    q = lambda tag: f"{{{POM_NS}}}{tag}"  # noqa: E731  # every POM element is in the POM namespace
    schema = f"{POM_NS} https://maven.apache.org/xsd/maven-4.0.0.xsd"
    root = ET.Element(q("project"), {f"{{{XSI_NS}}}schemaLocation": schema})
    for tag, text in (
        ("modelVersion", "4.0.0"), ("groupId", group), ("artifactId", artifact), ("version", version),
        ("packaging", "aar"), ("name", artifact), ("description", description),
    ):  # fmt: skip
        ET.SubElement(root, q(tag)).text = text
    listed = ET.SubElement(root, q("dependencies"))
    for dep in dependencies:
        node = ET.SubElement(listed, q("dependency"))
        for tag, text in (("groupId", dep.group), ("artifactId", dep.artifact), ("version", dep.version)):
            ET.SubElement(node, q(tag)).text = text
        ET.SubElement(node, q("scope")).text = dep.scope
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def metadata(group: str, artifact: str, version: str, built_at: str) -> bytes:
    """maven-metadata.xml of the artifact: this one version; ``lastUpdated`` is the bundle's build time
    (``yyyyMMddHHmmss``, UTC), so publishing the same bundle twice writes the same bytes."""
    root = ET.Element("metadata")
    ET.SubElement(root, "groupId").text = group
    ET.SubElement(root, "artifactId").text = artifact
    versioning = ET.SubElement(root, "versioning")
    ET.SubElement(versioning, "latest").text = version
    ET.SubElement(versioning, "release").text = version
    ET.SubElement(ET.SubElement(versioning, "versions"), "version").text = version
    ET.SubElement(versioning, "lastUpdated").text = re.sub(r"\D", "", built_at)[:14]
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _write(path: Path, data: bytes) -> list[Path]:
    """``path`` and its checksum files (lower-case hex, no newline, as Maven and Gradle write them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    written = [path]
    for suffix, algorithm in CHECKSUMS.items():
        sidecar = path.with_name(f"{path.name}.{suffix}")
        sidecar.write_text(algorithm(data).hexdigest())
        written.append(sidecar)
    return written


def publish(context: PublishContext) -> ReleaseFiles:
    """The Maven repository of the bundle's Android module under ``out/android/maven/``.

    Raises:
        StepError: kotlinc is not found (the message names ``--no-maven``), or the module's build file
            cannot be read.
        ConversionError: the module's Kotlin does not compile.
    """
    if context.options.get("no-maven"):
        log.info("--no-maven: the release has android.zip but no Maven repository")
        return ReleaseFiles()
    table = context.table
    assert isinstance(table, AndroidSpec)
    project = context.manifest.project
    artifact = module_name(project.name, table)
    root = context.bundle / PLATFORM / artifact
    module = read_build_file(root / "build.gradle.kts")
    kotlinc = find_kotlinc(str(context.options["kotlinc"]) if context.options.get("kotlinc") else None)
    sources = _tree(root / "src" / "main" / "kotlin", ".kt")
    with tempfile.TemporaryDirectory(prefix="packager-kotlinc-") as scratch:
        files = [root / "src" / "main" / "kotlin" / name for name in sources]
        compiled = compile_module(kotlinc, files, artifact, module.jvm_target, Path(scratch))
        classes = _jar(_tree(compiled.classes))
    rules = root / "consumer-rules.pro"
    aar = {
        "AndroidManifest.xml": android_manifest(module),
        "classes.jar": classes,
        "R.txt": b"",
        "META-INF/com/android/build/gradle/aar-metadata.properties": AAR_METADATA.encode(),
        **({"proguard.txt": rules.read_bytes()} if rules.is_file() else {}),
        **{f"assets/{name}": data for name, data in _tree(root / "src" / "main" / "assets").items()},
    }
    group_dir = context.out / REPOSITORY / Path(*table.package.split(".")) / artifact
    base = group_dir / project.version / f"{artifact}-{project.version}"
    dependencies = list(module.dependencies)
    if not any((d.group, d.artifact) == KOTLIN_STDLIB[:2] for d in dependencies):
        dependencies.append(Dependency(*KOTLIN_STDLIB, scope="compile"))  # the Kotlin plugin adds it as `api`
    description = (
        f"{project.name} {project.version}: models and Kotlin loaders generated by packager "
        f"(bundle manifest content_sha256 {context.manifest.content_sha256})"
    )
    written = _write(base.with_name(base.name + ".aar"), zip_bytes(aar, first=("AndroidManifest.xml",)))
    written += _write(base.with_name(base.name + "-sources.jar"), _jar(sources))
    pom_bytes = pom(table.package, artifact, project.version, description, dependencies)
    written += _write(base.with_name(base.name + ".pom"), pom_bytes)
    built = context.manifest.built_at
    written += _write(
        group_dir / "maven-metadata.xml", metadata(table.package, artifact, project.version, built)
    )
    return ReleaseFiles(files=written, tools={"kotlinc": compiled.kotlinc_version})
