"""The bundled example, end to end: the YuNet detector and the SFace embedder on real face photos,
in one bundle (slow: marker e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kotlin.toolchain import toolchain
from swift.toolchain import bundle_accessor
from swift.toolchain import toolchain as swift_toolchain

from packager.cli import main
from packager.validate.metrics import artifact_size

HEADS = [f"{quantity}_{stride}" for quantity in ("cls", "obj", "bbox", "kps") for stride in (8, 16, 32)]
"""YuNet's outputs, in the model's order."""
TASK = {"face_recall", "extra_faces", "mean_iou", "landmark_error_px"}


@pytest.mark.e2e
def test_faceid_example_builds_gates_and_rebuilds_from_cache(
    faceid_example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dist"
    assert main(["build", str(faceid_example), "--out", str(out)]) == 0
    bundle = out / "faceid-1.4.0"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["passed"]
    models = {m["name"]: m for m in manifest["models"]}
    assert list(models) == ["face_detector", "face_embedder"]

    detector = models["face_detector"]
    assert [o["name"] for o in detector["outputs"]] == HEADS
    assert detector["output_kinds"] == dict.fromkeys(HEADS, "dense")
    variants = {v["variant"]: v for v in detector["variants"]}
    assert set(variants) == {"fp32", "fp16", "int8-qdq"}
    for name in ("fp16", "int8-qdq"):
        variant = variants[name]
        assert variant["passed"], name
        measured = variant["metrics"][variant["gate_mode"]]
        assert [o["name"] for o in measured["outputs"]] == HEADS, "every output is validated"
        assert {g["output"] for g in variant["gates"]} == {*HEADS, "task"}, "every output is gated"
        masked = {g["output"] for g in variant["gates"] if g["name"] == "min_mask_iou"}
        assert masked == {"obj_8", "obj_16", "obj_32"}
        task = {t["name"]: t for t in measured["task"]}
        assert set(task) == TASK, name
        assert task["face_recall"]["higher_is_better"] and not task["landmark_error_px"]["higher_is_better"]
        assert task["face_recall"]["value"] >= 0.98 and task["landmark_error_px"]["value"] <= 1.0
        task_gates = {g["name"] for g in variant["gates"] if g["output"] == "task"}
        assert task_gates == {f"task:{metric}" for metric in TASK}
    fp16 = {t["name"]: t["value"] for t in variants["fp16"]["metrics"]["reference"]["task"]}
    assert fp16["face_recall"] == 1.0 and fp16["landmark_error_px"] < 0.05

    embedder = models["face_embedder"]
    variants = {v["variant"]: v for v in embedder["variants"]}
    assert set(variants) == {"fp32", "fp16", "int8-dynamic", "int8-qdq", "mixed"}
    assert all(v["passed"] for v in variants.values())
    assert variants["int8-qdq"]["size_ratio"] <= 0.26
    assert variants["fp16"]["size_ratio"] <= 0.51

    assert {a["model"] for a in manifest["artifacts"]} == {"face_detector", "face_embedder"}
    for artifact in manifest["artifacts"]:
        assert artifact_size(bundle / artifact["path"]) == artifact["size_bytes"]  # a folder: its files
    report = (bundle / "report.md").read_text()
    assert "face_detector" in report and "face_embedder" in report

    android = {a["path"].rsplit("/", 2)[-2] + "/" + a["path"].rsplit("/", 1)[-1]: a
               for a in manifest["artifacts"] if a["platform"] == "android"}  # fmt: skip
    assert set(android) == {
        "face_detector/fp32.ort",  # its int8-qdq.ort is larger than FP32's (small model): not shipped
        "face_detector/fp32.tflite",
        "face_detector/fp16.tflite",  # its int8.tflite splits at 2 upsamplings (3 partitions): rejected
        "face_embedder/fp32.ort",
        "face_embedder/mixed.ort",  # the first INT8 variant that passed (before int8-qdq, int8-dynamic)
        "face_embedder/fp32.tflite",
        "face_embedder/fp16.tflite",
        "face_embedder/int8.tflite",
    }
    int8 = android["face_embedder/int8.tflite"]["validation"]["details"]
    assert int8["xnnpack"]["partitions"] == 1 and int8["host_speed"]["ratio"] < 1.0
    for name, artifact in android.items():
        assert artifact["validation"]["passed"] and artifact["validation"]["metrics"], name
    assert (
        android["face_embedder/mixed.ort"]["size_bytes"]
        <= 0.27 * android["face_embedder/fp32.ort"]["size_bytes"]
    )
    kotlin = [bundle / s["path"] for s in manifest["sources"] if s["path"].endswith(".kt")]
    assert {p.name for p in kotlin} >= {"FaceEmbedderOrt.kt", "FaceEmbedderTflite.kt", "FaceDetectorOrt.kt"}
    tools = toolchain()
    compiled = tools.kotlinc_start(kotlin, tmp_path / "classes", "-Werror")
    stdout, stderr = compiled.communicate(timeout=600)
    assert compiled.returncode == 0, f"the bundle's Kotlin does not compile:\n{stdout}{stderr}"

    ios = {a["path"].rsplit("/", 2)[-2] + "/" + a["path"].rsplit("/", 1)[-1]: a
           for a in manifest["artifacts"] if a["platform"] == "ios"}  # fmt: skip
    assert set(ios) == {
        f"{model}/{file}" for model in models for file in ("fp32.ort", "fp16.ort", "fp16.mlpackage")
    }
    for name, artifact in ios.items():
        assert artifact["validation"]["passed"] and artifact["validation"]["metrics"], name
    package = ios["face_embedder/fp16.mlpackage"]
    # Core ML does not run on Linux: the SavedModel it was converted from is measured in its place.
    assert package["validation"]["validated_on"].startswith("the FP32 TF SavedModel it was converted from")
    assert set(package["validation"]["details"]["coreml"]["weight_dtypes"]) == {"float16"}
    assert package["size_bytes"] <= 0.51 * models["face_embedder"]["variants"][0]["size_bytes"]
    swift = [bundle / s["path"] for s in manifest["sources"] if s["path"].endswith(".swift")]
    sources = [p for p in swift if p.name != "Package.swift"]
    assert {p.name for p in sources} >= {"FaceEmbedderOrt.swift", "FaceEmbedderCoreML.swift"}
    checked = swift_toolchain().typecheck([*sources, bundle_accessor(tmp_path)])
    assert checked.returncode == 0, f"the Swift does not typecheck:\n{checked.stdout}{checked.stderr}"

    capsys.readouterr()
    assert main(["build", str(faceid_example), "--out", str(out)]) == 0
    assert "0 ran)" in capsys.readouterr().out
