"""The phone runner end to end: real adb server, fake phones, scripted benchmark outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_adb_device import FakeDevice, ShellReply
from sample_outputs import read_sample

from device_bench.bundle import select_artifacts
from device_bench.results import BenchSettings, RunResult, load, save
from device_bench.runners import DeviceRunConfig, run_devices
from device_bench.tools import TOOLS

OUTPUTS = {
    "benchmark_model": read_sample("tflite_logcat_xnnpack.txt"),
    "onnxruntime_perf_test": read_sample("ort_2025_total.txt"),
}
REMOTE = "/data/local/tmp/device-bench-t1"


def _config(binaries: dict[str, Path], **settings: object) -> DeviceRunConfig:
    values = {"threads": 2, "runs": 20, "warmup": 3, "providers": ["cpu"], **settings}
    return DeviceRunConfig(
        run_id="t1",
        settings=BenchSettings(**values),  # type: ignore[arg-type]
        binaries=binaries,
        cool_poll_s=0.01,
    )


def _run(adb_server, serials, bundle, config, previous=None, saved=None):  # type: ignore[no-untyped-def]
    selection = select_artifacts(bundle, TOOLS.formats())
    return run_devices(adb_server.client(), serials, selection, config, previous, saved or (lambda r: None))


def _ok(result: RunResult) -> list[tuple[str, str]]:
    return sorted((c.artifact.path, c.provider) for c in result.cells if c.status == "ok")


def test_pushes_runs_parses_and_cleans_up(adb_server, connect, bundle, binaries) -> None:  # type: ignore[no-untyped-def]
    fake = connect(benchmark_outputs=OUTPUTS)
    config = _config(binaries, providers=["cpu", "xnnpack", "gpu"], cpu_mask="f0")
    result = _run(adb_server, [fake.serial], bundle, config)

    assert sorted(fake.pushed) == [
        f"{REMOTE}/android__face_embedder__fp32.tflite",
        f"{REMOTE}/benchmark_model",
        f"{REMOTE}/models__face_embedder__fp32.onnx",
        f"{REMOTE}/models__face_embedder__int8-qdq.onnx",
        f"{REMOTE}/onnxruntime_perf_test",
    ]
    assert f"({f'chmod 755 {REMOTE}/benchmark_model'}) 2>&1; echo __DEVICE_BENCH_RC=$?" in fake.commands
    assert (
        f"{REMOTE}/benchmark_model --graph={REMOTE}/android__face_embedder__fp32.tflite --num_threads=2 "
        "--num_runs=20 --warmup_runs=3 --report_peak_memory_footprint=true --use_xnnpack=true"
    ) in fake.benchmarks_run
    assert (
        f"{REMOTE}/onnxruntime_perf_test -m times -r 20 -e xnnpack -x 2 -I -s "
        f"{REMOTE}/models__face_embedder__fp32.onnx"
    ) in fake.benchmarks_run
    assert len(fake.benchmarks_run) == 7  # 2 onnx x (cpu, xnnpack) + tflite x (cpu, xnnpack, gpu)
    ran = [c for c in fake.commands if "onnxruntime_perf_test -m" in c]
    assert all(c.startswith(f"(LD_LIBRARY_PATH={REMOTE} taskset f0 ") for c in ran)

    by_key = {(c.artifact.path, c.provider): c for c in result.cells}
    tflite = by_key[("android/face_embedder/fp32.tflite", "xnnpack")]
    assert tflite.status == "ok" and tflite.measurement is not None
    assert tflite.measurement.latency.avg_ms == pytest.approx(295.775)
    assert tflite.measurement.partitions[0].partitions == 21
    assert (
        tflite.artifact.sha256 == json.loads((bundle / "manifest.json").read_text())["artifacts"][2]["sha256"]
    )
    onnx_cell = by_key[("models/face_embedder/int8-qdq.onnx", "cpu")]
    assert onnx_cell.measurement is not None and onnx_cell.measurement.latency.p90_ms == pytest.approx(
        101.519
    )
    gpu_ort = by_key[("models/face_embedder/fp32.onnx", "gpu")]
    assert gpu_ort.status == "skipped" and "no provider 'gpu'" in (gpu_ort.error or "")
    assert by_key[("android/face_embedder/fp32.tflite", "gpu")].status == "ok"

    [run] = result.devices
    assert run.status == "complete"
    assert run.device.model == "Pixel 7" and run.device.sdk == 34 and run.device.abi == "arm64-v8a"
    assert run.device.battery_temp_c == pytest.approx(28.5) and run.device.thermal_c["skin-therm"] == 33.1
    assert fake.commands[-1].startswith(f"(rm -rf {REMOTE})")
    assert not any(p.startswith(REMOTE) for p in fake.files)


def test_only_given_binaries_are_pushed(adb_server, connect, bundle, binaries) -> None:  # type: ignore[no-untyped-def]
    fake = connect(benchmark_outputs=OUTPUTS)
    result = _run(adb_server, [fake.serial], bundle, _config({"ort": binaries["ort"]}))
    assert f"{REMOTE}/benchmark_model" not in fake.pushed
    [tfl] = [c for c in result.cells if c.tool == "tflite"]
    assert tfl.status == "skipped" and "--tflite-benchmark" in (tfl.error or "")
    assert len(_ok(result)) == 2


def test_binary_without_exec_bit_gets_chmod(adb_server, connect, bundle, binaries) -> None:  # type: ignore[no-untyped-def]
    binaries["tflite"].chmod(0o644)  # e.g. copied out of a zip
    fake = connect(benchmark_outputs=OUTPUTS)
    result = _run(adb_server, [fake.serial], bundle, _config(binaries))
    assert fake.commands.index(f"(chmod 755 {REMOTE}/benchmark_model) 2>&1; echo __DEVICE_BENCH_RC=$?") > 0
    assert len(_ok(result)) == 3


def test_permission_denied_even_after_chmod(adb_server, connect, bundle, binaries) -> None:  # type: ignore[no-untyped-def]
    fake = FakeDevice(benchmark_outputs=OUTPUTS)
    fake.noexec = True  # like /sdcard: chmod "works" but nothing may execute
    connect(fake)
    result = _run(adb_server, [fake.serial], bundle, _config(binaries))
    assert {c.status for c in result.cells} == {"failed"}
    assert all("chmod 755" in (c.error or "") and "noexec" in (c.error or "") for c in result.cells)
    # one retry per tool after a fresh chmod, then the tool is marked broken: no retry storm
    tries = [c for c in fake.commands if "LD_LIBRARY_PATH" in c]
    assert len(tries) == 4
    assert result.devices[0].status == "complete"


def test_no_space_left(adb_server, connect, bundle, binaries) -> None:  # type: ignore[no-untyped-def]
    fake = FakeDevice(benchmark_outputs=OUTPUTS)
    fake.free_bytes = 100
    connect(fake)
    result = _run(adb_server, [fake.serial], bundle, _config(binaries))
    [run] = result.devices
    assert run.status == "failed"
    assert "no space left" in (run.error or "") and "rm -r /data/local/tmp/device-bench-*" in (
        run.error or ""
    )
    assert {c.status for c in result.cells} == {"missing"}


def test_garbage_output_fails_the_cell_quoting_it(adb_server, connect, bundle, binaries) -> None:  # type: ignore[no-untyped-def]
    garbage = "WARNING: linker: unsupported flags DT_FLAGS_1=0x8000001\nhello from a wrong binary\n"
    fake = connect(benchmark_outputs={**OUTPUTS, "benchmark_model": garbage})
    result = _run(adb_server, [fake.serial], bundle, _config(binaries))
    [tfl] = [c for c in result.cells if c.tool == "tflite"]
    assert tfl.status == "failed"
    assert "linker: unsupported flags DT_FLAGS_1=0x8000001 | hello from a wrong binary" in (tfl.error or "")
    assert len(_ok(result)) == 2


def test_tool_failure_on_one_provider_keeps_the_others(adb_server, connect, bundle, binaries) -> None:  # type: ignore[no-untyped-def]
    def ort(argv: list[str]) -> ShellReply:
        if "nnapi" in argv:
            return ShellReply("Failed to create session: NNAPI is not available on this device\n", 1)
        return ShellReply(OUTPUTS["onnxruntime_perf_test"])

    fake = connect(benchmark_outputs={**OUTPUTS, "onnxruntime_perf_test": ort})
    result = _run(
        adb_server, [fake.serial], bundle, _config({"ort": binaries["ort"]}, providers=["cpu", "nnapi"])
    )
    failed = [c for c in result.cells if c.status == "failed"]
    assert len(failed) == 2 and all("status 1: Failed to create session" in (c.error or "") for c in failed)
    assert len(_ok(result)) == 2


def test_device_gone_mid_run_keeps_partial_results_then_resume(  # type: ignore[no-untyped-def]
    adb_server, connect, bundle, binaries, tmp_path: Path
) -> None:
    fake = FakeDevice(benchmark_outputs=OUTPUTS)
    fake.disconnect_on_benchmark = 3
    connect(fake)
    out = tmp_path / "results.json"
    result = _run(adb_server, [fake.serial], bundle, _config(binaries), saved=lambda r: save(r, out))

    [run] = result.devices
    assert run.status == "partial" and "--resume" in (run.error or "")
    assert len(_ok(result)) == 2 and len(result.cells_with("missing")) == 1
    stored = load(out)  # written after every cell: the two measured cells survived
    assert _ok(stored) == _ok(result)

    # The phone comes back on the same address: only the missing cell runs.
    again = connect(FakeDevice(benchmark_outputs=OUTPUTS), port=fake.port)
    resumed = _run(adb_server, [again.serial], bundle, _config(binaries), previous=stored)
    assert len(again.benchmarks_run) == 1
    assert len(_ok(resumed)) == 3 and resumed.devices[0].status == "complete"


def test_resume_reruns_a_cell_whose_artifact_changed(adb_server, connect, bundle, binaries) -> None:  # type: ignore[no-untyped-def]
    fake = connect(benchmark_outputs=OUTPUTS)
    first = _run(adb_server, [fake.serial], bundle, _config(binaries))
    first.cells[0].artifact.sha256 = "0" * 64
    _run(adb_server, [fake.serial], bundle, _config(binaries), previous=first)
    assert len(fake.benchmarks_run) == 3 + 1


def test_devices_run_in_parallel_but_one_benchmark_per_device(  # type: ignore[no-untyped-def]
    adb_server, connect, bundle, binaries
) -> None:
    a = connect(benchmark_outputs=OUTPUTS, benchmark_delay_s=0.25)
    b = connect(benchmark_outputs=OUTPUTS, benchmark_delay_s=0.25)
    result = _run(adb_server, [a.serial, b.serial], bundle, _config(binaries))
    assert [r.status for r in result.devices] == ["complete", "complete"]
    assert len(_ok(result)) == 6
    assert a.max_concurrent_benchmarks == 1 and b.max_concurrent_benchmarks == 1
    overlaps = [(s1 < e2 and s2 < e1) for s1, e1 in a.benchmark_intervals for s2, e2 in b.benchmark_intervals]
    assert any(overlaps), "the two phones never benchmarked at the same time"


def test_waits_until_the_phone_is_cool(adb_server, connect, bundle, binaries) -> None:  # type: ignore[no-untyped-def]
    fake = connect(benchmark_outputs=OUTPUTS, battery_temps=[285, 452, 410, 330, 300])
    result = _run(adb_server, [fake.serial], bundle, _config({"ort": binaries["ort"]}, max_temp_c=35.0))
    first = next(c for c in result.cells if c.status == "ok")
    assert first.temp_before_c == pytest.approx(33.0)
    battery_reads = [c for c in fake.commands if "dumpsys battery" in c]
    assert len(battery_reads) >= 4  # info, then 45.2 -> 41.0 -> 33.0 before the first benchmark


def test_too_hot_fails_the_cell_with_the_fix(adb_server, connect, bundle, binaries) -> None:  # type: ignore[no-untyped-def]
    fake = connect(benchmark_outputs=OUTPUTS, battery_temps=[480])
    config = _config({"ort": binaries["ort"]}, max_temp_c=35.0)
    config = DeviceRunConfig(**{**config.__dict__, "cool_timeout_s": 0.05})
    result = _run(adb_server, [fake.serial], bundle, config)
    errors = [c.error or "" for c in result.cells if c.tool == "ort"]
    assert errors and all("48.0 °C" in e and "--max-temp" in e for e in errors)
    assert fake.benchmarks_run == []


def test_binary_for_another_abi_names_the_abi(adb_server, connect, bundle, binaries) -> None:  # type: ignore[no-untyped-def]
    wrong = ShellReply(
        f"/system/bin/sh: {REMOTE}/onnxruntime_perf_test: not executable: 32-bit ELF file\n", 126
    )
    fake = connect(benchmark_outputs={**OUTPUTS, "onnxruntime_perf_test": wrong})
    result = _run(adb_server, [fake.serial], bundle, _config({"ort": binaries["ort"]}))
    errors = {c.error for c in result.cells if c.tool == "ort"}
    assert len(errors) == 1
    [error] = errors
    assert "ABI arm64-v8a" in (error or "") and "android_arm64" in (error or "")
    assert len(fake.benchmarks_run) == 1  # no chmod-and-retry, no second attempt for the next cell


def test_model_file_permission_message_is_not_taken_for_the_binary(  # type: ignore[no-untyped-def]
    adb_server, connect, bundle, binaries
) -> None:
    noisy = "W: open /sdcard/cache.bin: Permission denied\n" + OUTPUTS["onnxruntime_perf_test"]
    fake = connect(benchmark_outputs={**OUTPUTS, "onnxruntime_perf_test": noisy})
    result = _run(adb_server, [fake.serial], bundle, _config({"ort": binaries["ort"]}))
    assert len(_ok(result)) == 2 and len(fake.benchmarks_run) == 2


def test_benchmark_timeout_fails_the_cell_and_kills_it(adb_server, connect, bundle, binaries) -> None:  # type: ignore[no-untyped-def]
    fake = connect(benchmark_outputs=OUTPUTS, benchmark_delay_s=0.6)
    config = DeviceRunConfig(**{**_config({"ort": binaries["ort"]}).__dict__, "bench_timeout_s": 0.2})
    result = _run(adb_server, [fake.serial], bundle, config)
    failed = [c for c in result.cells if c.status == "failed"]
    assert len(failed) == 2 and all("did not answer within 0.2 s" in (c.error or "") for c in failed)
    assert f"(pkill -f {REMOTE}/onnxruntime_perf_test) 2>&1; echo __DEVICE_BENCH_RC=$?" in fake.commands
