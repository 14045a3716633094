"""Any model, every output: builds without pairs, metrics and gates by output kind, several models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import model_factory
import pytest

from packager.build import BuildOptions
from packager.config import load_config
from packager.pipeline import build_project

PROJECT = """\
[project]
name = "apps"
version = "0.2.0"
"""

MODEL = """
[[models]]
name = "{name}"
source = "{source}"
input = {{ size = [32, 32], channels = "BGR", mean = [127.5, 127.5, 127.5], layout = "NCHW" }}
{outputs}
calibration = {{ images = "calib", count = 16, min_count = 4, method = "minmax", probe_images = 8 }}
evaluation = {{ {evaluation} }}
variants = {variants}
{gates}
"""


@pytest.fixture
def project(tiny_assets: Path, tmp_path: Path):  # -> factory
    def make(*models: dict[str, str]) -> Path:
        root = tmp_path / "project"
        if not root.exists():
            shutil.copytree(tiny_assets, root)
            model_factory.save(model_factory.detector_like(), root / "detector.onnx")
            model_factory.save(model_factory.classifier_like(), root / "classifier.onnx")
        text = PROJECT + "".join(MODEL.format(**{"gates": "", **m}) for m in models)
        (root / "packager.toml").write_text(text + "\n[build]\nlatency_runs = 2\nlatency_warmup = 0\n")
        return root / "packager.toml"

    return make


def _manifest(config: Path) -> dict:
    outcome = build_project(load_config(config), BuildOptions())
    manifest = json.loads((outcome.bundle / "manifest.json").read_text())
    manifest["_bundle"] = str(outcome.bundle)  # for tests that read the report beside it
    return manifest


def project_root_of(manifest: dict) -> Path:
    return Path(manifest["_bundle"])


def _gates(manifest: dict, model: int, variant: str) -> list[tuple[str, str]]:
    found = next(v for v in manifest["models"][model]["variants"] if v["variant"] == variant)
    return [(g["output"], g["name"]) for g in found["gates"]]


LOGITS = {
    "name": "classifier",
    "source": "classifier.onnx",
    "outputs": 'output = { name = "logits", kind = "logits" }',
    "evaluation": 'images = "eval"',
    "variants": '["fp16"]',
}
"""The classifier with only its logits declared; tests add a ``gates``/``task`` line."""
EMBEDDER = {
    "name": "embedder",
    "source": "model.onnx",
    "outputs": 'output = { kind = "embedding", normalize = "l2" }',
    "evaluation": 'images = "eval"',
    "variants": '["int8-dynamic"]',
}
DETECTOR = {
    "name": "detector",
    "source": "detector.onnx",
    "outputs": 'outputs = [{ name = "heatmap", kind = "dense", mask_threshold = 0.5 }, '
    '{ name = "boxes", kind = "dense", gates = { min_sqnr_db = 20 } }]',
    "evaluation": 'images = "eval"',
    "variants": '["fp16", "int8-qdq"]',
}


def test_an_embedding_model_without_pairs_builds_and_is_gated_on_cosine_only(project) -> None:
    manifest = _manifest(project(EMBEDDER))
    assert _gates(manifest, 0, "int8-dynamic") == [("embedding", "min_mean_cosine")]
    evaluation = manifest["models"][0]["evaluation"]
    assert evaluation["pairs"] == 0 and evaluation["images"] == evaluation["from_images"] == 20
    (out,) = manifest["models"][0]["variants"][1]["metrics"]["reference"]["outputs"]
    assert out["kind"] == "embedding" and out["verification"] is None


def test_every_output_of_a_detector_is_validated_and_gated_by_its_kind(project) -> None:
    manifest = _manifest(project(DETECTOR))
    model = manifest["models"][0]
    assert model["output_kinds"] == {"heatmap": "dense", "boxes": "dense"}
    assert _gates(manifest, 0, "int8-qdq") == [
        ("heatmap", "min_sqnr_db"),
        ("heatmap", "min_mask_iou"),
        ("boxes", "min_sqnr_db"),
    ]
    fp16 = next(v for v in model["variants"] if v["variant"] == "fp16")
    heat, boxes = fp16["metrics"]["reference"]["outputs"]
    assert heat["mask_iou"] is not None and heat["sqnr_db"] > 40 and boxes["mask_iou"] is None
    assert [g["bar"] for g in fp16["gates"]] == [30.0, 0.9, 20.0]


def test_a_classifier_is_gated_on_top1_agreement(project) -> None:
    classifier = {
        "name": "classifier",
        "source": "classifier.onnx",
        "outputs": 'outputs = [{ name = "logits", kind = "logits" }, '
        '{ name = "probs", kind = "classification" }]',
        "evaluation": 'images = "eval"',
        "variants": '["int8-qdq"]',
        "gates": "gates = { min_top5_agreement = 0.9 }",
    }
    manifest = _manifest(project(classifier))
    assert _gates(manifest, 0, "int8-qdq") == [
        ("logits", "min_top1_agreement"),
        ("logits", "min_top5_agreement"),
        ("probs", "min_top1_agreement"),
        ("probs", "min_top5_agreement"),
    ]
    (variant,) = manifest["models"][0]["variants"][1:]
    logits = variant["metrics"]["reference"]["outputs"][0]
    assert 0.0 <= logits["top1_agreement"] <= 1.0 and logits["kl_divergence"] >= 0.0


def test_a_detector_and_an_embedder_ship_in_one_bundle(project) -> None:
    manifest = _manifest(project(DETECTOR, EMBEDDER))
    assert [m["name"] for m in manifest["models"]] == ["detector", "embedder"]
    paths = {a["path"] for a in manifest["artifacts"]}
    assert {"models/detector/int8-qdq.onnx", "models/embedder/int8-dynamic.onnx"} <= paths


def test_a_task_check_is_reported_and_gated_beside_the_tensor_metrics(project) -> None:
    classifier = {
        **LOGITS,
        "gates": 'task = { check = "packager.tasks.topk:check", gates = { label_match = 0.95 } }',
    }
    manifest = _manifest(project(classifier))
    fp16 = manifest["models"][0]["variants"][1]
    task = {t["name"]: t["value"] for t in fp16["metrics"]["reference"]["task"]}
    assert task["label_match"] == 1.0 and task["top5_overlap"] == 1.0
    gate = next(g for g in fp16["gates"] if g["output"] == "task")
    assert gate["name"] == "task:label_match" and gate["comparison"] == ">=" and gate["passed"]
    report = (project_root_of(manifest) / "report.md").read_text()
    task_section = report[report.index("### Task check") :]
    assert "| fp16 | 1.0000 | 1.0000 |" in task_section and "`top5_overlap`" in task_section


def test_a_task_gate_on_a_metric_the_check_does_not_report_lists_the_real_ones(project) -> None:
    from packager.errors import ConfigError

    classifier = {
        **LOGITS,
        "gates": 'task = { check = "packager.tasks.topk:check", gates = { label_mach = 0.95 } }',
    }
    with pytest.raises(
        ConfigError, match=r"no metric \['label_mach'\]; it reports: label_match, top5_overlap"
    ):
        _manifest(project(classifier))


def test_a_task_check_that_does_not_import_fails_before_any_step_runs(project) -> None:
    from packager.errors import ConfigError
    from packager.plan import make_plan

    classifier = {**LOGITS, "gates": 'task = { check = "nope:check" }'}
    with pytest.raises(ConfigError, match=r"'classifier'.*cannot import 'nope'"):
        make_plan(load_config(project(classifier)), BuildOptions())
