"""Host runner with real runtimes: onnxruntime on a tiny ONNX model, LiteRT on a tiny .tflite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bundle_factory import tiny_onnx, write_bundle

from device_bench.bundle import select_artifacts
from device_bench.host import HOST_ENGINES, run_host
from device_bench.results import BenchSettings

MAKE_TFLITE = """
import sys
import tensorflow as tf

@tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
def embed(x):
    w = tf.constant(0.1, shape=[3, 3, 3, 8])
    return tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME")), axis=[1, 2])

converter = tf.lite.TFLiteConverter.from_concrete_functions([embed.get_concrete_function()], embed)
open(sys.argv[1], "wb").write(converter.convert())
"""


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 2 KB conv model made by the real TFLite converter (~8 s, mostly importing TensorFlow)."""
    out = tmp_path_factory.mktemp("tflite") / "tiny.tflite"
    proc = subprocess.run(
        [sys.executable, "-c", MAKE_TFLITE, str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"could not make a .tflite with tensorflow: {proc.stderr[-2000:]}")
    return out.read_bytes()


def test_host_runs_onnx_and_tflite_with_the_phone_schema(tmp_path: Path, tiny_tflite: bytes) -> None:
    root = write_bundle(
        tmp_path / "dist" / "faceid-1.4.0",
        {
            "models/face_embedder/fp32.onnx": tiny_onnx(0).SerializeToString(),
            "android/face_embedder/fp32.tflite": tiny_tflite,
        },
    )
    settings = BenchSettings(threads=1, runs=7, warmup=2, providers=["cpu", "xnnpack", "nnapi"])
    result = run_host(select_artifacts(root, set(HOST_ENGINES)), settings, "h1")

    cells = {(c.tool, c.provider): c for c in result.cells}
    for key in [("ort", "cpu"), ("tflite", "cpu"), ("tflite", "xnnpack")]:
        cell = cells[key]
        assert cell.status == "ok", cell.error
        assert cell.device == "host" and cell.measurement is not None
        lat = cell.measurement.latency
        assert lat.count == 7
        assert 0 < lat.min_ms <= lat.p50_ms <= lat.p90_ms <= lat.max_ms  # type: ignore[operator]
        assert cell.measurement.init_ms is not None and cell.measurement.init_ms > 0
    for key in [("ort", "nnapi"), ("tflite", "nnapi")]:
        assert cells[key].status == "skipped" and "nnapi" in (cells[key].error or "")
    # pip onnxruntime has no XNNPACK EP: skipped with the reason, never a made-up number
    assert cells[("ort", "xnnpack")].status == "skipped"
    assert result.devices[0].device.kind == "host"
    assert {t.name for t in result.tools} == {"ort", "tflite"}
    assert result.bundle.project == "faceid"


def test_host_reports_a_broken_model_as_failed(tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "b", {"models/m/fp32.onnx": b"not an onnx model"})
    result = run_host(select_artifacts(root, {"onnx"}), BenchSettings(runs=2, warmup=0), "h2")
    [cell] = result.cells
    assert cell.status == "failed" and "onnxruntime could not run it" in (cell.error or "")
