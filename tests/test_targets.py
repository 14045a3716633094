"""The platform seam: a target found through the real entry-point mechanism adds a config table,
steps and artifacts, and the core builds, validates, ships and reports them without naming it."""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

import pytest

from packager.build import BuildOptions
from packager.cli import main
from packager.config import load_config
from packager.errors import ConfigError
from packager.pipeline import build_project
from packager.plan import make_plan
from packager.steps import code_fingerprint

DEMO = Path(__file__).parent / "targets_demo"


@pytest.fixture
def demo_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution on sys.path whose entry points register the demo targets, as pip would."""
    site = tmp_path / "site"
    info = site / "demo_target-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-target\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[packager.targets]\ndemo = demo_target:TARGET\nother = demo_target:OTHER\n"
    )
    (site / "demo_target.py").write_text((DEMO / "demo_target.py").read_text())
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "demo_target", raising=False)  # this test's copy, not an earlier one
    code_fingerprint.cache_clear()
    return site


def _with_table(config: Path, table: str) -> Path:
    config.write_text(config.read_text() + "\n" + table + "\n")
    return config


def test_a_target_s_artifacts_are_built_validated_shipped_and_reported(tiny_project, demo_installed) -> None:
    config = _with_table(tiny_project(variants='["fp16"]'), '[demo]\nvariants = ["fp16"]')
    outcome = build_project(load_config(config), BuildOptions())
    manifest = json.loads((outcome.bundle / "manifest.json").read_text())
    demo = {a["path"]: a for a in manifest["artifacts"] if a["platform"] == "demo"}
    assert set(demo) == {"demo/models/embedder/fp16.onnx", "demo/models/embedder/package.demo"}
    by_path = {a.file: a for a in outcome.result.models[0].artifacts}
    shipped = by_path["demo/models/embedder/fp16.onnx"]
    assert shipped.modes and shipped.gates and shipped.passed
    assert shipped.details["ep_coverage"]["supported_nodes"] == 7
    folder = by_path["demo/models/embedder/package.demo"]
    assert folder.modes == {} and folder.not_validated_reason == "the demo runtime exists on no host"
    assert (outcome.bundle / "demo" / "models" / "embedder" / "package.demo" / "weights.bin").is_file()
    assert "demo/models/embedder/fp16.onnx" in (outcome.bundle / "report.md").read_text()
    assert (outcome.bundle / "demo.zip").is_file()


def test_a_target_s_own_tensor_facts_reach_the_manifest(tiny_project, demo_installed) -> None:
    config = _with_table(tiny_project(variants='["fp16"]'), '[demo]\nvariants = ["fp16"]')
    manifest = json.loads(
        (build_project(load_config(config), BuildOptions()).bundle / "manifest.json").read_text()
    )
    artifact = next(a for a in manifest["artifacts"] if a["path"] == "demo/models/embedder/fp16.onnx")
    assert artifact["inputs"] == [
        {"name": "demo_input", "dtype": "int8", "shape": [1, 8], "scale": 0.5, "zero_point": -3}
    ]
    assert artifact["outputs"][0]["name"] == "embedding"  # not recorded by the target: the model's own


def test_generated_sources_are_made_from_the_manifest_listed_and_zipped(tiny_project, demo_installed) -> None:
    config = _with_table(tiny_project(variants='["fp16"]'), '[demo]\nvariants = ["fp16"]')
    bundle = build_project(load_config(config), BuildOptions()).bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    loader = (bundle / "demo" / "Loader.txt").read_text()
    shipped = next(a for a in manifest["artifacts"] if a["path"] == "demo/models/embedder/fp16.onnx")
    assert f"demo/models/embedder/fp16.onnx {shipped['sha256']}" in loader
    [source] = manifest["sources"]
    assert source["path"] == "demo/Loader.txt" and source["platform"] == "demo"
    assert source["sha256"] == hashlib.sha256(loader.encode()).hexdigest()
    with zipfile.ZipFile(bundle / "demo.zip") as archive:
        assert archive.read("demo/Loader.txt").decode() == loader
    [zipped] = manifest["archives"]
    assert zipped["path"] == "demo.zip"
    assert zipped["sha256"] == hashlib.sha256((bundle / "demo.zip").read_bytes()).hexdigest()


def test_of_alternatives_the_first_that_passes_ships_and_the_other_is_reported(
    tiny_project, demo_installed
) -> None:
    table = '[demo]\nvariants = ["fp16", "int8-dynamic"]\nalternatives = true'
    config = _with_table(tiny_project(variants='["fp16", "int8-dynamic"]'), table)
    outcome = build_project(load_config(config), BuildOptions())
    by_path = {a.file: a for a in outcome.result.models[0].artifacts}
    assert by_path["demo/models/embedder/fp16.onnx"].not_shipped_reason is None
    assert "alternative of demo/models/embedder/fp16.onnx" in str(
        by_path["demo/models/embedder/int8-dynamic.onnx"].not_shipped_reason
    )
    assert not (outcome.bundle / "demo" / "models" / "embedder" / "int8-dynamic.onnx").exists()
    manifest = json.loads((outcome.bundle / "manifest.json").read_text())
    assert "demo/models/embedder/int8-dynamic.onnx" not in {a["path"] for a in manifest["artifacts"]}
    assert "not shipped: alternative of" in (outcome.bundle / "report.md").read_text()


def test_an_artifact_its_target_rejects_is_measured_reported_and_not_shipped(
    tiny_project, demo_installed
) -> None:
    table = '[demo]\nvariants = ["fp16"]\nreject = ["fp16"]'
    outcome = build_project(
        load_config(_with_table(tiny_project(variants='["fp16"]'), table)), BuildOptions()
    )
    [rejected] = [a for a in outcome.result.models[0].artifacts if a.file.endswith("fp16.onnx")]
    assert rejected.modes and rejected.details == {
        "ep_coverage": {"supported_nodes": 7, "total_nodes": 7, "partitions": 1},
        "checked": True,
    }
    assert rejected.not_shipped_reason == "slower than its float sibling"
    assert not (outcome.bundle / "demo" / "models" / "embedder" / "fp16.onnx").exists()


def test_the_platform_zip_is_byte_identical_when_rebuilt_elsewhere(
    tiny_project, demo_installed, tmp_path
) -> None:
    config = load_config(_with_table(tiny_project(variants='["fp16"]'), "[demo]"))
    first = build_project(config, BuildOptions()).bundle / "demo.zip"
    other = config.model_copy(
        update={"build": config.build.model_copy(update={"cache": tmp_path / "c2", "out": tmp_path / "d2"})}
    )
    second = build_project(other, BuildOptions()).bundle / "demo.zip"
    assert first.read_bytes() == second.read_bytes()


def test_a_step_two_requests_share_is_planned_once(tiny_project, demo_installed) -> None:
    planned = make_plan(load_config(_with_table(tiny_project(variants='["fp16"]'), "[demo]")), BuildOptions())
    names = [s.name for s in planned.steps]
    assert names.count("demo-shared[embedder]") == 1
    assert "validate[demo:embedder:fp16:onnx:fp16]" in names


def test_the_same_step_name_with_another_definition_is_an_error(tiny_project, demo_installed) -> None:
    config = load_config(_with_table(tiny_project(variants='["fp16"]'), "[demo]\n[other]"))
    with pytest.raises(ConfigError, match=r"step 'demo-shared\[embedder\]' is already planned"):
        make_plan(config, BuildOptions())


def test_an_unknown_table_lists_the_installed_targets(tiny_project, demo_installed) -> None:
    config = _with_table(tiny_project(variants='["fp16"]'), "[andriod]\npackage = 'x'")
    with pytest.raises(ConfigError, match=r"unknown table \[andriod\]; one of: android, demo, ios, other"):
        load_config(config)


def test_a_target_table_is_validated_by_its_schema(tiny_project, demo_installed) -> None:
    config = _with_table(tiny_project(variants='["fp16"]'), "[demo]\nflavour = 1")
    with pytest.raises(ConfigError, match=r"\[demo\]\.flavour"):
        load_config(config)


def test_graph_lists_the_products(tiny_project, demo_installed, capsys: pytest.CaptureFixture[str]) -> None:
    config = _with_table(tiny_project(variants='["fp16"]'), "[demo]")
    assert main(["graph", str(config)]) == 0
    out = capsys.readouterr().out
    assert "demo/models/embedder/fp16.onnx" in out and "not validated: the demo runtime" in out


def test_no_core_module_imports_a_target() -> None:
    import ast

    core = Path(__file__).resolve().parents[1] / "packager"
    for path in core.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n == "targets" or n.startswith(("targets.", "demo_target")) for n in names), path


def test_editing_a_target_s_code_reruns_its_steps(tiny_project, demo_installed) -> None:
    config = load_config(_with_table(tiny_project(variants='["fp16"]'), "[demo]"))
    build_project(config, BuildOptions())
    source = demo_installed / "demo_target.py"
    source.write_text(source.read_text() + "\n# an edit\n")
    code_fingerprint.cache_clear()  # a new process would compute it afresh
    again = build_project(config, BuildOptions())
    reran = {s.name for s in again.steps if not s.cached}
    assert "demo-copy[embedder:fp16]" in reran and "prepare[embedder]" not in reran
