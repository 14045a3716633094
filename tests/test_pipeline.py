"""The whole build on a tiny real project: bundle contents, caching, determinism, gates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from packager.build import BuildOptions
from packager.config import load_config
from packager.errors import GateFailed, OutputError
from packager.pipeline import build_project


def _bundle_bytes(bundle: Path) -> dict[str, bytes]:
    return {str(p.relative_to(bundle)): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file()}


def test_build_writes_every_variant_manifest_and_reports(tiny_project) -> None:
    config = load_config(tiny_project())
    outcome = build_project(config, BuildOptions())
    bundle = outcome.bundle
    assert bundle.name == "tiny-0.1.0"
    names = sorted(p.name for p in (bundle / "models" / "embedder").iterdir())
    assert names == ["fp16.onnx", "fp32.onnx", "int8-dynamic.onnx", "int8-qdq.onnx", "mixed.onnx"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {a["variant"] for a in manifest["artifacts"]} == {
        "fp32",
        "fp16",
        "int8-dynamic",
        "int8-qdq",
        "mixed",
    }
    assert manifest["models"][0]["source_sha256"] and manifest["tool_versions"]["onnxruntime"]
    assert manifest["models"][0]["preprocessing"]["mean"] == [127.5, 127.5, 127.5]
    assert (bundle / "report.md").exists() and (bundle / "report.html").exists()
    assert outcome.result.passed


def test_rebuild_with_nothing_changed_runs_no_step_and_is_byte_identical(tiny_project) -> None:
    config = load_config(tiny_project())
    first = build_project(config, BuildOptions())
    before = _bundle_bytes(first.bundle)
    second = build_project(config, BuildOptions())
    assert all(step.cached for step in second.steps)
    after = _bundle_bytes(second.bundle)
    manifest_a, manifest_b = (json.loads(b["manifest.json"]) for b in (before, after))
    manifest_a.pop("built_at"), manifest_b.pop("built_at")
    assert manifest_a == manifest_b
    assert {k: v for k, v in before.items() if k != "manifest.json"} == {
        k: v for k, v in after.items() if k != "manifest.json"
    }


def test_changing_one_variant_setting_reruns_only_its_steps(tiny_project) -> None:
    path = tiny_project()
    build_project(load_config(path), BuildOptions())
    path.write_text(path.read_text().replace('method = "minmax"', 'method = "percentile"'))
    outcome = build_project(load_config(path), BuildOptions())
    reran = sorted(s.name for s in outcome.steps if not s.cached)
    assert reran == [
        "calibrate[embedder]",
        "quantize[embedder:int8-qdq]",
        "quantize[embedder:mixed]",
        "validate[embedder:int8-qdq]",
        "validate[embedder:mixed]",
    ]


def test_changing_only_mixed_limits_does_not_recalibrate(tiny_project) -> None:
    path = tiny_project()
    build_project(load_config(path), BuildOptions())
    path.write_text(path.read_text().replace("max_float_share = 0.5", "max_float_share = 0.4"))
    outcome = build_project(load_config(path), BuildOptions())
    reran = sorted(s.name for s in outcome.steps if not s.cached)
    assert reran[0] == "quantize[embedder:mixed]" and "calibrate[embedder]" not in reran


def test_failed_gate_raises_and_leaves_no_bundle(tiny_project) -> None:
    config = load_config(tiny_project(min_cos=0.99999))
    with pytest.raises(GateFailed) as err:
        build_project(config, BuildOptions())
    assert "min_mean_cosine" in str(err.value) or "cosine" in str(err.value)
    assert not (config.build.out / "tiny-0.1.0").exists()
    assert err.value.report is not None and err.value.report.exists()


def test_no_gates_writes_the_bundle_and_marks_the_manifest(tiny_project) -> None:
    config = load_config(tiny_project(min_cos=0.99999))
    outcome = build_project(config, BuildOptions(enforce_gates=False))
    manifest = json.loads((outcome.bundle / "manifest.json").read_text())
    assert manifest["passed"] is False and manifest["gates_enforced"] is False


def test_unwritable_output_fails_before_any_work(tiny_project, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    config = load_config(tiny_project())
    with pytest.raises(OutputError, match="not writable"):
        build_project(config, BuildOptions(), out=blocker / "dist")
    assert not config.build.cache.exists()


def test_variants_option_builds_only_those_and_the_manifest_says_so(tiny_project) -> None:
    config = load_config(tiny_project())
    outcome = build_project(config, BuildOptions(variants=("fp16",)))
    assert [v.variant for v in outcome.result.models[0].variants] == ["fp16"]
    settings = json.loads((outcome.bundle / "manifest.json").read_text())["settings"]
    assert settings["command_line"] == {"variants": ["fp16"]}
    assert settings["config"]["models"][0]["source"] == "model.onnx"


def test_cold_rebuild_in_a_fresh_cache_gives_identical_model_bytes(tiny_project, tmp_path: Path) -> None:
    config = load_config(tiny_project())
    first = _bundle_bytes(build_project(config, BuildOptions()).bundle)
    fresh = config.model_copy(
        update={
            "build": config.build.model_copy(update={"cache": tmp_path / "cache2", "out": tmp_path / "dist2"})
        }
    )
    second = _bundle_bytes(build_project(fresh, BuildOptions()).bundle)
    models = sorted(k for k in first if k.endswith(".onnx"))
    assert len(models) == 5
    assert all(first[k] == second[k] for k in models)


def test_a_failure_while_writing_the_bundle_leaves_nothing(
    tiny_project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import packager.report

    def broken_report(result: object, out_dir: Path) -> list[Path]:
        (out_dir / "report.md").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(packager.report, "write_report", broken_report)
    config = load_config(tiny_project(variants='["fp16"]'))
    with pytest.raises(OutputError, match=r"could not write the bundle .*disk full"):
        build_project(config, BuildOptions())
    assert not config.build.out.exists()


def test_bundle_is_readable_by_others(tiny_project) -> None:
    outcome = build_project(load_config(tiny_project(variants='["fp16"]')), BuildOptions())
    assert outcome.bundle.stat().st_mode & 0o755 == 0o755


def test_manifest_lists_every_output_the_app_receives(tiny_project) -> None:
    import model_factory

    config = tiny_project(variants='["fp16"]')
    model_factory.save(
        model_factory.mobilefacenet_like(size=32, seed=1, batch="N", opset=11, two_heads=True),
        config.parent / "model.onnx",
    )
    config.write_text(config.read_text().replace("output = { kind", 'output = { name = "embedding", kind'))
    outcome = build_project(load_config(config), BuildOptions())
    manifest = json.loads((outcome.bundle / "manifest.json").read_text())
    model = manifest["models"][0]
    assert [o["name"] for o in model["outputs"]] == ["logits", "embedding"]
    assert model["primary_output"] == "embedding"
    for artifact in manifest["artifacts"]:
        assert [o["name"] for o in artifact["outputs"]] == ["logits", "embedding"]


def test_each_variant_is_timed_interleaved_with_fp32_in_its_own_step(tiny_project) -> None:
    from packager.report.tables import latency_ratio

    outcome = build_project(load_config(tiny_project(variants='["fp16"]')), BuildOptions())
    model = outcome.result.models[0]
    default = model.variants[0].modes["default"]
    assert default.baseline_latency is not None and default.baseline_latency.runs == default.latency.runs == 3
    assert model.variants[0].modes["reference"].baseline_latency is None  # speed is a default-mode figure
    assert latency_ratio(model.variants[0], model) == default.latency.p50_ms / default.baseline_latency.p50_ms
