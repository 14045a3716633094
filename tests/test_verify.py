"""``packager verify``: a bundle that matches its manifest passes; any changed, missing or unlisted file,
or an edited manifest, is named and fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from packager.build import BuildOptions
from packager.cli import main
from packager.config import load_config
from packager.errors import DataError
from packager.pipeline import build_project
from packager.verify import verify_bundle


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_project_in) -> Path:
    config = tiny_project_in(tmp_path_factory.mktemp("verify"), '["fp16"]')
    return build_project(load_config(config), BuildOptions()).bundle


@pytest.fixture
def bundle(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / built.name
    shutil.copytree(built, copy)
    return copy


def _first_artifact(bundle: Path) -> Path:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return bundle / manifest["artifacts"][0]["path"]


def test_an_untouched_bundle_verifies(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(bundle)]) == 0
    assert "match manifest.json, nothing extra" in capsys.readouterr().out


def test_a_changed_artifact_is_named_with_both_checksums(bundle: Path) -> None:
    artifact = _first_artifact(bundle)
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    (problem,) = verify_bundle(bundle).problems
    assert problem.startswith(f"{artifact.relative_to(bundle)}: sha256 ") and "the manifest says" in problem


def test_a_missing_and_an_extra_file_fail_the_command(bundle: Path, capsys) -> None:
    artifact = _first_artifact(bundle)
    artifact.unlink()
    (bundle / "models" / "stray.onnx").write_bytes(b"x")
    assert main(["verify", str(bundle)]) == 1
    printed = capsys.readouterr().err
    assert f"{artifact.relative_to(bundle)}: missing" in printed
    assert "models/stray.onnx: not in the manifest" in printed


def test_an_edited_manifest_is_caught_by_its_content_hash(bundle: Path) -> None:
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    data["passed"] = not data["passed"]
    path.write_text(json.dumps(data))
    assert any("content_sha256 does not match" in p for p in verify_bundle(bundle).problems)


def test_a_folder_without_a_manifest_is_an_error_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no manifest.json here\. Fix: pass a bundle folder"):
        verify_bundle(tmp_path)


def test_an_edited_result_is_caught(bundle: Path) -> None:
    results = bundle / "results.json"
    results.write_text(results.read_text().replace('"passed": true', '"passed": false', 1))
    (problem,) = verify_bundle(bundle).problems
    assert problem.startswith("results.json: sha256 ")


def test_reports_rendered_again_by_packager_report_still_verify(bundle: Path) -> None:
    (bundle / "report.md").unlink()
    (bundle / "report.html").write_text("edited")
    assert len(verify_bundle(bundle).problems) == 2
    assert main(["report", str(bundle)]) == 0
    assert verify_bundle(bundle).problems == []
