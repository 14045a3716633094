"""The device-bench command line end to end: exit codes, files written, messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_adb_device import FakeDevice
from sample_outputs import read_sample

from device_bench.cli import main

OUTPUTS = {
    "benchmark_model": read_sample("tflite_info_percentiles.txt"),
    "onnxruntime_perf_test": read_sample("ort_2020_acl.txt"),
}


def _adb_args(adb_server) -> list[str]:  # type: ignore[no-untyped-def]
    return ["--adb", str(adb_server.executable), "--adb-port", str(adb_server.port), "--timeout", "20"]


def test_run_writes_json_md_html_and_exits_0(  # type: ignore[no-untyped-def]
    adb_server, connect, bundle, binaries, tmp_path: Path, capsys
) -> None:
    fake = connect(benchmark_outputs=OUTPUTS)
    out = tmp_path / "results"
    argv = ["run", str(bundle / "android"), "--serial", fake.serial, *_adb_args(adb_server)]
    argv += ["--tflite-benchmark", str(binaries["tflite"]), "--ort-perf-test", str(binaries["ort"])]
    argv += [
        "--threads",
        "4",
        "--runs",
        "50",
        "--warmup",
        "10",
        "--providers",
        "cpu,xnnpack",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    [json_path] = out.glob("device-bench-*.json")
    data = json.loads(json_path.read_text())
    assert data["schema_version"] == 1
    assert [c["measurement"]["latency"]["avg_ms"] for c in data["cells"]] == [1240.27, 1240.27]
    assert data["devices"][0]["device"]["model"] == "Pixel 7"
    tools = {t["name"]: t for t in data["tools"]}
    assert len(tools["tflite"]["sha256"]) == 64 and tools["tflite"]["binary"] == str(binaries["tflite"])
    assert json_path.with_suffix(".md").read_text().count("1240.27") == 2
    assert json_path.with_suffix(".html").is_file()
    assert "| android/face_embedder/fp32.tflite | tflite | xnnpack | 1240.27 |" in capsys.readouterr().out
    assert fake.pushed[-1].endswith("android__face_embedder__fp32.tflite")  # only android/ was selected


def test_run_with_device_gone_exits_1_and_says_how_to_resume(  # type: ignore[no-untyped-def]
    adb_server, connect, bundle, binaries, tmp_path: Path, capsys
) -> None:
    fake = FakeDevice(benchmark_outputs=OUTPUTS)
    fake.disconnect_on_benchmark = 2
    connect(fake)
    out = tmp_path / "run.json"
    argv = [
        "run",
        str(bundle),
        *_adb_args(adb_server),
        "--ort-perf-test",
        str(binaries["ort"]),
        "--out",
        str(out),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "disconnected or went offline" in err
    assert f"1 cell(s) not run: {fake.serial}:models/face_embedder/int8-qdq.onnx[cpu]" in err
    assert f"--resume {out}" in err
    assert [c["status"] for c in json.loads(out.read_text())["cells"]] == ["ok", "missing", "skipped"]


def test_host_run(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "host.json"
    assert (
        main(["run", str(bundle / "models"), "--host", "--runs", "3", "--warmup", "1", "--out", str(out)])
        == 0
    )
    cells = json.loads(out.read_text())["cells"]
    assert [(c["device"], c["status"]) for c in cells] == [("host", "ok"), ("host", "ok")]


def test_devices_lists_model_soc_abi_sdk_battery(adb_server, connect, capsys) -> None:  # type: ignore[no-untyped-def]
    fake = connect()
    assert main(["devices", *_adb_args(adb_server)]) == 0
    out = capsys.readouterr().out
    assert f"| {fake.serial} | device | Pixel 7 | Tensor G2 | arm64-v8a | 34 | 85 | 28.5 |" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "PATH", "--host", "--providers", "cpu,tpu"], "unknown provider tpu; one of: cpu, xnnpack"),
        (["run", "PATH"], "pass --tflite-benchmark and/or --ort-perf-test"),
        (["run", "PATH", "--host", "--serial", "X"], "drop --serial"),
        (["run", "PATH", "--host", "--cpu-mask", "0xZZ"], "not a hex mask"),
        (["compare", "a.json", "b.json", "--max-regression", "lots"], "not a percentage"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, bundle: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    argv = [str(bundle) if a == "PATH" else a for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_adb_exits_1_naming_the_fix(bundle: Path, binaries, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    argv = ["run", str(bundle), "--ort-perf-test", str(binaries["ort"]), "--adb", str(tmp_path / "no-adb")]
    assert main(argv) == 1
    assert "adb not found" in capsys.readouterr().err


def test_several_devices_without_serial_is_a_usage_error(  # type: ignore[no-untyped-def]
    adb_server, connect, bundle, binaries, capsys
) -> None:
    connect(), connect()
    argv = ["run", str(bundle), *_adb_args(adb_server), "--ort-perf-test", str(binaries["ort"])]
    assert main(argv) == 2
    assert "pass --serial SERIAL (repeatable) or --all" in capsys.readouterr().err


def test_parse_prints_json_and_rejects_garbage(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    captured = tmp_path / "out.txt"
    captured.write_text(read_sample("ort_2023_latency_is_sec.txt"))
    assert main(["parse", "--tool", "ort", str(captured)]) == 0
    assert json.loads(capsys.readouterr().out)["latency"]["p50_ms"] == pytest.approx(58.7108)
    captured.write_text("Usage: benchmark_model --graph=<path>\nError: --graph not set\n")
    assert main(["parse", "--tool", "tflite", str(captured)]) == 1
    assert (
        "First lines were: Usage: benchmark_model --graph=<path> | Error: --graph not set"
        in capsys.readouterr().err
    )


def test_compare_exit_codes(tmp_path: Path, bundle: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    base = tmp_path / "base.json"
    assert (
        main(["run", str(bundle / "models"), "--host", "--runs", "2", "--warmup", "0", "--out", str(base)])
        == 0
    )
    data = json.loads(base.read_text())
    slower = tmp_path / "new.json"
    for cell in data["cells"]:
        cell["measurement"]["latency"]["avg_ms"] *= 1.5
    slower.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["compare", str(base), str(base)]) == 0
    assert main(["compare", str(base), str(slower), "--max-regression", "10%"]) == 1
    assert "2 regression(s) beyond 10%" in capsys.readouterr().err
    assert main(["compare", str(base), str(slower), "--max-regression", "60%"]) == 0
