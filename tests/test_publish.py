"""packager/publish.py, provenance.py and release_store.py: a verified bundle published as
``<name>/<version>/`` in a folder or at an fsspec URL.

One tiny bundle with both targets (ORT artifacts only: ~1 s) is built once in a git repository and published
to fresh destinations. The Android Maven repository needs kotlinc and is covered in test_publish_android.py:
here it is switched off with the target's ``no-maven`` option, except where a bad kotlinc path makes a
publish fail on purpose.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from staging_helpers import killed_writers_staging

from packager.build import BuildOptions
from packager.cli import main
from packager.config import load_config
from packager.errors import ConfigError, DataError, OutputError, StepError
from packager.pipeline import build_project
from packager.publish import PROVENANCE, SUMS, PublishOptions, publish_bundle

TABLES = """
[android]
package = "com.example.tiny"
module = "tiny"
runtimes = ["ort"]

[ios]
module = "Tiny"
runtimes = ["ort"]
"""
NO_MAVEN = PublishOptions(target_options={"android": {"no-maven": True}})


def _git(folder: Path, *args: str) -> str:
    cmd = ["git", "-C", str(folder), "-c", "user.name=test", "-c", "user.email=test@example.com", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, tiny_project_in) -> Path:
    """dist/tiny-0.1.0 of a project committed to git (dist/ stays untracked)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the provenance's commit cannot be tested")
    config = tiny_project_in(tmp_path_factory.mktemp("publish"), '["fp16"]', TABLES)
    _git(config.parent, "init", "-q")
    _git(config.parent, "add", "-A")
    _git(config.parent, "commit", "-q", "-m", "tiny project")
    return build_project(load_config(config), BuildOptions()).bundle


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_release_holds_the_platform_zips_manifest_package_archive_provenance_and_sums(
    bundle: Path, tmp_path: Path
) -> None:
    done = publish_bundle(bundle, str(tmp_path / "releases"), NO_MAVEN)
    version = tmp_path / "releases" / "tiny" / "0.1.0"
    assert done.location == str(version) and done.atomic and not done.replaced
    files = _files(version)
    expected = {"android.zip", "ios.zip", "manifest.json", "ios/Tiny.zip", "ios/Tiny.zip.sha256", PROVENANCE}
    assert set(files) == expected | {SUMS}
    for name in ("android.zip", "ios.zip", "manifest.json"):
        assert files[name] == (bundle / name).read_bytes(), name
    assert [f.path for f in done.files] == sorted(files)
    assert sorted(p.name for p in (tmp_path / "releases" / "tiny").iterdir()) == ["0.1.0"]  # no staging left


def test_sha256sum_checks_every_published_file_and_catches_a_changed_one(
    bundle: Path, tmp_path: Path
) -> None:
    if shutil.which("sha256sum") is None:
        pytest.skip("GNU sha256sum is not installed")
    publish_bundle(bundle, str(tmp_path), NO_MAVEN)
    version = tmp_path / "tiny" / "0.1.0"
    checked = subprocess.run(
        ["sha256sum", "--strict", "-c", SUMS], cwd=version, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(": OK\n") == len(_files(version)) - 1  # every file but SHA256SUMS itself
    with (version / "ios" / "Tiny.zip").open("ab") as handle:
        handle.write(b"\0")
    tampered = subprocess.run(["sha256sum", "-c", SUMS], cwd=version, capture_output=True, text=True)
    assert tampered.returncode == 1 and "ios/Tiny.zip: FAILED" in tampered.stdout


def _statement(version: Path) -> dict:
    return json.loads((version / PROVENANCE).read_text())


def test_the_provenance_parses_as_an_in_toto_statement_v1_with_a_slsa_provenance_v1_predicate(
    bundle: Path, tmp_path: Path
) -> None:
    publish_bundle(bundle, str(tmp_path), NO_MAVEN)
    version = tmp_path / "tiny" / "0.1.0"
    text = (version / PROVENANCE).read_text()
    # The attestation framework's own protobuf bindings: unknown fields and wrong types are errors.
    parsed = json_format.Parse(text, statement_pb2.Statement())
    Statement.copy_from_pb(parsed).validate()
    data = json.loads(text)
    predicate = json_format.ParseDict(data["predicate"], provenance_pb2.Provenance())
    assert parsed.type == "https://in-toto.io/Statement/v1"
    assert parsed.predicate_type == "https://slsa.dev/provenance/v1"
    assert predicate.build_definition.build_type and predicate.run_details.builder.id  # SLSA: required
    assert (
        predicate.run_details.metadata.started_on.seconds
        <= predicate.run_details.metadata.finished_on.seconds
    )
    subjects = {s.name: dict(s.digest) for s in parsed.subject}
    published = {k: v for k, v in _files(version).items() if k not in (PROVENANCE, SUMS)}
    assert subjects == {
        name: {"sha256": hashlib.sha256(data).hexdigest()} for name, data in published.items()
    }


def test_the_provenance_names_the_config_source_model_tools_and_git_commit(
    bundle: Path, tmp_path: Path
) -> None:
    done = publish_bundle(bundle, str(tmp_path), NO_MAVEN)
    project = bundle.parents[1]
    manifest = json.loads((bundle / "manifest.json").read_text())
    build = _statement(tmp_path / "tiny" / "0.1.0")["predicate"]["buildDefinition"]
    assert build["externalParameters"]["config_sha256"] == manifest["config_sha256"]
    assert build["externalParameters"]["config"] == manifest["settings"]["config"]
    assert build["internalParameters"]["gates_passed"] is True
    dependencies = {d["name"]: d for d in build["resolvedDependencies"]}
    model = hashlib.sha256((project / "model.onnx").read_bytes()).hexdigest()
    assert dependencies["model.onnx"]["digest"] == {"sha256": model}
    assert dependencies["packager.toml"]["digest"] == {"gitCommit": _git(project, "rev-parse", "HEAD")}
    assert dependencies["packager.toml"]["annotations"] == {"dirty": False}
    onnxruntime = manifest["tool_versions"]["onnxruntime"]
    assert dependencies["onnxruntime"]["uri"] == f"pkg:pypi/onnxruntime@{onnxruntime}"
    assert done.config == project / "packager.toml" and done.source is not None


def test_a_change_to_a_tracked_file_marks_the_commit_dirty(bundle: Path, tmp_path: Path) -> None:
    pairs = bundle.parents[1] / "eval" / "pairs.txt"
    original = pairs.read_bytes()
    pairs.write_bytes(original + b"\n")
    try:
        done = publish_bundle(bundle, str(tmp_path), NO_MAVEN)
    finally:
        pairs.write_bytes(original)
    assert done.source is not None and done.source.dirty
    build = _statement(tmp_path / "tiny" / "0.1.0")["predicate"]["buildDefinition"]
    (repository,) = [d for d in build["resolvedDependencies"] if "gitCommit" in d.get("digest", {})]
    assert repository["annotations"] == {"dirty": True}


def test_a_config_the_bundle_was_not_built_from_is_refused(bundle: Path, tmp_path: Path) -> None:
    other = bundle.parents[1] / "other.toml"
    other.write_text((bundle.parents[1] / "packager.toml").read_text().replace('"0.1.0"', '"0.2.0"'))
    options = PublishOptions(config=other, target_options=NO_MAVEN.target_options)
    with pytest.raises(
        DataError, match=r"other\.toml: its settings hash to .*pass the packager\.toml the bundle"
    ):
        publish_bundle(bundle, str(tmp_path), options)
    assert not (tmp_path / "tiny").exists()


def test_an_existing_version_is_refused_without_force_and_replaced_with_it(
    bundle: Path, tmp_path: Path
) -> None:
    publish_bundle(bundle, str(tmp_path), NO_MAVEN)
    version = tmp_path / "tiny" / "0.1.0"
    (version / "stale.txt").write_text("from an earlier publish")
    with pytest.raises(OutputError, match=r"tiny 0\.1\.0 is already published here.*pass --force"):
        publish_bundle(bundle, str(tmp_path), NO_MAVEN)
    forced = PublishOptions(force=True, target_options=NO_MAVEN.target_options)
    done = publish_bundle(bundle, str(tmp_path), forced)
    assert done.replaced and not (version / "stale.txt").exists()
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["0.1.0"]  # old copy and staging gone


def test_a_killed_publishs_staging_is_removed_by_the_next_publish(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "tiny").mkdir()
    leftover = killed_writers_staging(tmp_path / "tiny", "0.1.0")
    publish_bundle(bundle, str(tmp_path), NO_MAVEN)
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["0.1.0"] and not leftover.exists()


def test_a_failed_publish_leaves_nothing_behind(bundle: Path, tmp_path: Path) -> None:
    options = PublishOptions(target_options={"android": {"kotlinc": str(tmp_path / "no-kotlinc")}})
    with pytest.raises(StepError, match=r"--kotlinc .*no-kotlinc: not an executable file.*--no-maven"):
        publish_bundle(bundle, str(tmp_path / "releases"), options)
    assert not (tmp_path / "releases").exists()


def test_a_bundle_that_does_not_match_its_manifest_is_refused(bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tiny-0.1.0"
    shutil.copytree(bundle, copy)
    with (copy / "ios.zip").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(
        DataError, match=r"does not match its manifest\.json .*ios\.zip: sha256.*packager verify"
    ):
        publish_bundle(copy, str(tmp_path / "releases"), NO_MAVEN)
    assert not (tmp_path / "releases").exists()


def test_a_bundle_whose_gates_failed_needs_allow_failed_gates(
    tmp_path_factory: pytest.TempPathFactory, tiny_project_in, tmp_path: Path
) -> None:
    config = tiny_project_in(tmp_path_factory.mktemp("failed"), '["fp16"]', TABLES, min_cos=1.0)
    failed = build_project(load_config(config), BuildOptions(enforce_gates=False)).bundle
    assert json.loads((failed / "manifest.json").read_text())["passed"] is False
    with pytest.raises(DataError, match=r"release gates did not pass .*--allow-failed-gates"):
        publish_bundle(failed, str(tmp_path), NO_MAVEN)
    allowed = PublishOptions(allow_failed_gates=True, target_options=NO_MAVEN.target_options)
    publish_bundle(failed, str(tmp_path), allowed)
    statement = _statement(tmp_path / "tiny" / "0.1.0")["predicate"]["buildDefinition"]
    assert statement["internalParameters"]["gates_passed"] is False
    assert statement["externalParameters"]["publish"]["allow_failed_gates"] is True


def test_an_fsspec_url_gets_the_same_files_and_sha256sums_is_uploaded_last(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploaded: list[str] = []
    put_file = MemoryFileSystem.put_file

    def recording(self: MemoryFileSystem, lpath: str, rpath: str, **kwargs: object) -> None:
        uploaded.append(rpath.rsplit("/0.1.0/", 1)[1])
        put_file(self, lpath, rpath, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "put_file", recording)
    done = publish_bundle(bundle, "memory://publish-order/releases", NO_MAVEN)
    assert done.location == "memory://publish-order/releases/tiny/0.1.0" and not done.atomic
    assert uploaded[-1] == SUMS and uploaded.count(SUMS) == 1  # the completion marker goes up last
    fs = fsspec.filesystem("memory")
    sums = fs.cat(f"{done.location}/{SUMS}").decode().splitlines()
    assert len(sums) == len(uploaded) - 1
    for line in sums:
        digest, name = line.split("  ", 1)
        assert hashlib.sha256(fs.cat(f"{done.location}/{name}")).hexdigest() == digest, name


def test_a_half_published_version_on_an_object_store_is_refused_and_replaced_with_force(bundle: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/half/tiny/0.1.0/android.zip", b"interrupted upload")
    with pytest.raises(OutputError, match=r"half-published tiny 0\.1\.0 .*no SHA256SUMS.*pass --force"):
        publish_bundle(bundle, "memory://half", NO_MAVEN)
    forced = PublishOptions(force=True, target_options=NO_MAVEN.target_options)
    done = publish_bundle(bundle, "memory://half", forced)
    assert done.replaced
    assert fs.cat("/half/tiny/0.1.0/android.zip") == (bundle / "android.zip").read_bytes()


def test_cli_publishes_refuses_a_second_time_and_names_a_bad_url(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = str(tmp_path / "releases")
    assert main(["publish", str(bundle), "--to", dest, "--no-maven"]) == 0
    out = capsys.readouterr().out
    assert f"published {dest}/tiny/0.1.0: 7 files" in out and "source: git " in out
    assert main(["publish", str(bundle), "--to", dest, "--no-maven"]) == 1
    assert "already published here" in capsys.readouterr().err
    assert main(["publish", str(bundle), "--to", "nosuchprotocol://x", "--no-maven"]) == 2
    assert "--to: nosuchprotocol://x" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="options for targets not installed: symbian"):
        publish_bundle(bundle, dest, PublishOptions(target_options={"symbian": {"x": True}}))


def test_an_s3_bucket_gets_the_release_and_refuses_a_second_one(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against moto's S3 server on 127.0.0.1, through s3fs: the object-store path with real S3 semantics
    (no folders, listing by prefix)."""
    pytest.importorskip("s3fs", reason="s3fs (the [s3] extra) is not installed")
    server_module = pytest.importorskip(
        "moto.server", reason="moto[server] (a test dependency) is not installed"
    )
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(name, "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setitem(
            fsspec.config.conf, "s3", {"client_kwargs": {"endpoint_url": f"http://{host}:{port}"}}
        )
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir("releases")
        done = publish_bundle(bundle, "s3://releases/tiny-app", NO_MAVEN)
        assert done.location == "s3://releases/tiny-app/tiny/0.1.0" and not done.atomic
        fs.invalidate_cache()
        listed = sorted(p.rsplit("/0.1.0/", 1)[1] for p in fs.find("releases/tiny-app/tiny/0.1.0"))
        assert listed == [f.path for f in done.files]
        assert fs.cat(f"releases/tiny-app/tiny/0.1.0/{SUMS}").decode() == (
            "".join(f"{f.sha256}  {f.path}\n" for f in done.files if f.path != SUMS)
        )
        with pytest.raises(
            OutputError, match=r"s3://releases/tiny-app/tiny/0\.1\.0: tiny 0\.1\.0 is already"
        ):
            publish_bundle(bundle, "s3://releases/tiny-app", NO_MAVEN)
    finally:
        server.stop()
