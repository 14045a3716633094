"""The bundled example, end to end on the real SFace model and real face photos (slow: marker e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from packager.cli import main


@pytest.mark.e2e
def test_faceid_example_builds_gates_and_rebuilds_from_cache(
    faceid_example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dist"
    assert main(["build", str(faceid_example), "--out", str(out)]) == 0
    bundle = out / "faceid-1.4.0"
    manifest = json.loads((bundle / "manifest.json").read_text())
    variants = {v["variant"]: v for v in manifest["models"][0]["variants"]}
    assert set(variants) == {"fp32", "fp16", "int8-dynamic", "int8-qdq", "mixed"}
    assert all(v["passed"] for v in variants.values())
    assert variants["int8-qdq"]["size_ratio"] <= 0.26
    assert variants["fp16"]["size_ratio"] <= 0.51
    for artifact in manifest["artifacts"]:
        assert (bundle / artifact["path"]).stat().st_size == artifact["size_bytes"]
    assert "## Model" in (bundle / "report.md").read_text()

    capsys.readouterr()
    assert main(["build", str(faceid_example), "--out", str(out)]) == 0
    assert "0 ran)" in capsys.readouterr().out
