"""targets/android/maven.py and kotlinc.py: the Android module published as a Maven repository.

One tiny bundle with both Android runtimes (.ort and a float .tflite, ~7 s) is published once with the real
kotlinc of tests/kotlin/toolchain.py (~8 s); the tests read that release. Gradle is not installable here,
so nothing resolves the repository the way an app would: the tests check what Gradle reads — the paths of
Maven's repository layout, the POM, the checksum files, and the AAR's contents (classes listed by the JDK's
javap).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from kotlin.toolchain import toolchain

from packager.build import BuildOptions
from packager.config import load_config
from packager.errors import StepError
from packager.pipeline import build_project
from packager.publish import PublishOptions, publish_bundle
from targets.android.kotlinc import KOTLIN_STDLIB, find_kotlinc
from targets.android.maven import read_build_file

TABLE = """
[android]
package = "com.example.tiny"
module = "tiny"
runtimes = ["ort", "tflite"]
tflite_precisions = ["fp32"]
"""
REPO = "android/maven"
GROUP = "com/example/tiny/tiny"
VERSION_DIR = f"{GROUP}/0.1.0"
POM = "{http://maven.apache.org/POM/4.0.0}"
MODULE = "android/tiny"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, tiny_project_in) -> tuple[Path, Path]:
    """(bundle, the published version folder)."""
    chain = toolchain()
    config = tiny_project_in(tmp_path_factory.mktemp("maven"), '["fp16"]', TABLE)
    bundle = build_project(load_config(config), BuildOptions()).bundle
    dest = tmp_path_factory.mktemp("releases")
    options = PublishOptions(target_options={"android": {"kotlinc": str(chain.kotlinc)}})
    publish_bundle(bundle, str(dest), options)
    return bundle, dest / "tiny" / "0.1.0"


def test_the_repository_follows_maven_layout_with_checksums_beside_every_file(
    release: tuple[Path, Path],
) -> None:
    _, version = release
    repo = version / REPO
    found = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
    primary = [
        f"{GROUP}/maven-metadata.xml",
        f"{VERSION_DIR}/tiny-0.1.0-sources.jar",
        f"{VERSION_DIR}/tiny-0.1.0.aar",
        f"{VERSION_DIR}/tiny-0.1.0.pom",
    ]
    suffixes = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
    assert found == sorted(primary + [f"{p}.{s}" for p in primary for s in suffixes])
    for path in primary:
        data = (repo / path).read_bytes()
        for suffix, algorithm in suffixes.items():
            assert (repo / f"{path}.{suffix}").read_text() == algorithm(data).hexdigest(), f"{path}.{suffix}"


def test_the_pom_is_an_aar_listing_the_build_files_dependencies_and_the_kotlin_stdlib(
    release: tuple[Path, Path],
) -> None:
    bundle, version = release
    root = ET.parse(version / REPO / VERSION_DIR / "tiny-0.1.0.pom").getroot()
    assert root.tag == f"{POM}project"
    coordinates = [root.findtext(f"{POM}{tag}") for tag in ("groupId", "artifactId", "version", "packaging")]
    assert coordinates == ["com.example.tiny", "tiny", "0.1.0", "aar"]
    listed = {
        tuple(dep.findtext(f"{POM}{tag}") for tag in ("groupId", "artifactId", "version", "scope"))
        for dep in root.iter(f"{POM}dependency")
    }
    gradle = (bundle / MODULE / "build.gradle.kts").read_text()
    declared = {
        (*m.groups(), "runtime") for m in re.finditer(r'implementation\("([^:]+):([^:]+):([^"]+)"\)', gradle)
    }
    artifacts = {d[1] for d in declared}
    assert {"onnxruntime-android", "litert", "litert-api"} <= artifacts
    assert listed == declared | {(*KOTLIN_STDLIB, "compile")}


def test_the_aar_holds_manifest_assets_rules_and_agp_metadata(release: tuple[Path, Path]) -> None:
    bundle, version = release
    aar = zipfile.ZipFile(version / REPO / VERSION_DIR / "tiny-0.1.0.aar")
    names = set(aar.namelist())
    assets = bundle / MODULE / "src" / "main" / "assets"
    for path in assets.rglob("*"):
        if path.is_file():
            name = f"assets/{path.relative_to(assets).as_posix()}"
            assert aar.read(name) == path.read_bytes(), name
    assert {"assets/embedder/fp32.ort", "assets/embedder/fp32.tflite"} <= names
    manifest = ET.fromstring(aar.read("AndroidManifest.xml"))
    assert manifest.get("package") == "com.example.tiny"
    uses_sdk = manifest.find("uses-sdk")
    assert uses_sdk is not None
    assert uses_sdk.get("{http://schemas.android.com/apk/res/android}minSdkVersion") == "24"
    assert aar.read("R.txt") == b""
    assert aar.read("proguard.txt") == (bundle / MODULE / "consumer-rules.pro").read_bytes()
    metadata = aar.read("META-INF/com/android/build/gradle/aar-metadata.properties").decode()
    assert "aarFormatVersion=1.0\n" in metadata and "aarMetadataVersion=1.0\n" in metadata
    assert aar.namelist()[0] == "AndroidManifest.xml"
    assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in aar.infolist())


def test_classes_jar_holds_the_compiled_loaders_and_no_api_stub(
    release: tuple[Path, Path], tmp_path: Path
) -> None:
    if shutil.which("javap") is None:
        pytest.skip("javap (JDK 17) is not installed")
    _, version = release
    jar = tmp_path / "classes.jar"
    jar.write_bytes(zipfile.ZipFile(version / REPO / VERSION_DIR / "tiny-0.1.0.aar").read("classes.jar"))
    names = zipfile.ZipFile(jar).namelist()
    assert names[0] == "META-INF/MANIFEST.MF" and "META-INF/tiny.kotlin_module" in names
    assert not [n for n in names if n.startswith(("android/", "ai/", "org/"))]  # compile-only stubs stay out
    classes = ["com.example.tiny.EmbedderOrt", "com.example.tiny.EmbedderTflite", "com.example.tiny.Tensors"]
    shown = subprocess.run(["javap", "-cp", str(jar), *classes], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert (
        "public final class com.example.tiny.EmbedderOrt implements com.example.tiny.EmbedderModel"
        in shown.stdout
    )
    assert "com.example.tiny.EmbedderOutputs run(android.graphics.Bitmap)" in shown.stdout
    verbose = subprocess.run(
        ["javap", "-v", "-cp", str(jar), classes[0]], capture_output=True, text=True, timeout=120
    )
    assert "major version: 61" in verbose.stdout  # JVM 17, the module's jvmTarget


def test_the_sources_jar_holds_the_bundles_kotlin(release: tuple[Path, Path]) -> None:
    bundle, version = release
    jar = zipfile.ZipFile(version / REPO / VERSION_DIR / "tiny-0.1.0-sources.jar")
    kotlin = bundle / MODULE / "src" / "main" / "kotlin"
    expected = {p.relative_to(kotlin).as_posix(): p.read_bytes() for p in kotlin.rglob("*.kt")}
    assert {n: jar.read(n) for n in jar.namelist() if n.endswith(".kt")} == expected


def test_maven_metadata_lists_the_one_version(release: tuple[Path, Path]) -> None:
    _, version = release
    root = ET.parse(version / REPO / GROUP / "maven-metadata.xml").getroot()
    assert [root.findtext("groupId"), root.findtext("artifactId")] == ["com.example.tiny", "tiny"]
    assert [v.text for v in root.iter("version")] == ["0.1.0"]
    assert re.fullmatch(r"\d{14}", root.findtext("versioning/lastUpdated") or "")


def test_without_kotlinc_the_error_says_what_to_install_and_names_no_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KOTLINC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StepError, match=r"kotlinc not found .*npm install kotlin-compiler.*--no-maven"):
        find_kotlinc(None)
    monkeypatch.setenv("KOTLINC", str(tmp_path / "missing"))
    with pytest.raises(StepError, match=r"KOTLINC .*missing: not an executable file"):
        find_kotlinc(None)


def test_a_dependency_line_the_reader_does_not_know_is_an_error_not_a_missing_pom_entry(
    release: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, _ = release
    text = (bundle / MODULE / "build.gradle.kts").read_text()
    assert len(read_build_file(bundle / MODULE / "build.gradle.kts").dependencies) == 3
    edited = tmp_path / "build.gradle.kts"
    edited.write_text(text.replace("dependencies {\n", "dependencies {\n    implementation(libs.foo)\n", 1))
    with pytest.raises(StepError, match=r"dependency line 'implementation\(libs\.foo\)'"):
        read_build_file(edited)
