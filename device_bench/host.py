"""Host runner: the same artifacts on this machine, with onnxruntime and the LiteRT interpreter.

It produces the same cells (device "host", tool "ort"/"tflite", same providers) as the phone runner,
so one table shows host and phones side by side. Provider meaning mirrors the phone tools: for
TFLite "cpu" is the interpreter without default delegates and "xnnpack" the default (XNNPACK) path;
for ORT each provider maps to its execution provider when this onnxruntime build has it. Providers a
host cannot offer (nnapi, gpu) become "skipped" cells with the reason.

Heavy runtimes are imported inside the engine functions so ``device-bench --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from device_bench.bundle import Selection
from device_bench.errors import DeviceBenchError
from device_bench.results import (
    BenchSettings,
    Cell,
    DeviceInfo,
    DeviceRun,
    Latency,
    Measurement,
    RunResult,
    ToolInfo,
)
from device_bench.tools import TOOLS

log = logging.getLogger(__name__)

HOST = "host"
_ORT_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
}


class HostEngineError(DeviceBenchError):
    def __init__(self, artifact: str, engine: str, detail: str) -> None:
        super().__init__(
            f"{artifact}: {engine} could not run it on this host: {detail}. Fix: check the file loads"
        )


class ProviderUnavailable(Exception):
    """The provider does not exist on this host: the cell is skipped, not failed."""


def latency_from(samples_ms: list[float]) -> Latency:
    ordered = sorted(samples_ms)

    def pct(q: float) -> float:
        return float(np.percentile(ordered, q))

    return Latency(
        avg_ms=statistics.fmean(ordered),
        min_ms=ordered[0],
        max_ms=ordered[-1],
        p50_ms=pct(50),
        p90_ms=pct(90),
        p95_ms=pct(95),
        p99_ms=pct(99),
        std_ms=statistics.pstdev(ordered),
        count=len(ordered),
    )


def _random_input(
    shape: list[Any], dtype: np.dtype[Any], rng: np.random.Generator, value_range: tuple[float, float] | None
) -> np.ndarray:
    """Random data in the range the model really sees (from the manifest's preprocessing), else [0, 1].

    Some kernels' speed depends on the values (e.g. TFLite's CPU PReLU): [0, 1] fed to a model that
    expects 0..255 pixels measured int8 SFace 10 ms faster than real faces.
    """
    # ORT gives str/None for free dimensions, LiteRT numpy ints (-1 when dynamic): treat free as 1.
    dims = [int(d) if isinstance(d, int | np.integer) and d > 0 else 1 for d in shape]
    if np.issubdtype(dtype, np.floating):
        low, high = value_range or (0.0, 1.0)
        return rng.uniform(low, high, dims).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -128), min(info.max, 127), dims, endpoint=True).astype(dtype)


def _measure(
    run: Callable[[], object], settings: BenchSettings, init_ms: float, output_format: str
) -> Measurement:
    """First inference, warm-up average and per-run timings of ``run``, as both engines report them."""
    start = time.perf_counter()
    run()
    first = (time.perf_counter() - start) * 1000.0
    warm = []
    for _ in range(settings.warmup):
        t = time.perf_counter()
        run()
        warm.append((time.perf_counter() - t) * 1000.0)
    samples = []
    for _ in range(settings.runs):
        t = time.perf_counter()
        run()
        samples.append((time.perf_counter() - t) * 1000.0)
    return Measurement(
        latency=latency_from(samples),
        init_ms=init_ms,
        first_ms=first,
        warmup_avg_ms=statistics.fmean(warm) if warm else None,
        output_format=output_format,
    )


def run_ort(
    path: Path, provider: str, settings: BenchSettings, value_range: tuple[float, float] | None = None
) -> Measurement:
    import onnxruntime as ort

    ep = _ORT_PROVIDERS.get(provider)
    if ep is None or ep not in ort.get_available_providers():
        raise ProviderUnavailable(f"onnxruntime {ort.__version__} on this host has no {provider} provider")
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.log_severity_level = 3
    start = time.perf_counter()
    try:
        session = ort.InferenceSession(str(path), options, providers=[ep])
    except Exception as exc:  # onnxruntime raises bare RuntimeError subclasses with the reason
        raise HostEngineError(path.name, "onnxruntime", str(exc).splitlines()[0]) from exc
    init_ms = (time.perf_counter() - start) * 1000.0
    rng = np.random.default_rng(0)
    feeds = {
        i.name: _random_input(list(i.shape), _ORT_TYPES.get(i.type, np.dtype(np.float32)), rng, value_range)
        for i in session.get_inputs()
    }
    return _measure(lambda: session.run(None, feeds), settings, init_ms, "host-onnxruntime")


_ORT_TYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(bool)": np.dtype(np.bool_),
}


def run_tflite(
    path: Path, provider: str, settings: BenchSettings, value_range: tuple[float, float] | None = None
) -> Measurement:
    from ai_edge_litert import interpreter as litert

    resolvers = {
        "cpu": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        "xnnpack": litert.OpResolverType.AUTO,
    }
    if provider not in resolvers:
        raise ProviderUnavailable(f"the LiteRT interpreter on this host has no {provider} delegate")
    start = time.perf_counter()
    try:
        interp = litert.Interpreter(
            model_path=str(path),
            num_threads=settings.threads,
            experimental_op_resolver_type=resolvers[provider],
        )
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise HostEngineError(path.name, "LiteRT", str(exc).splitlines()[0]) from exc
    init_ms = (time.perf_counter() - start) * 1000.0
    rng = np.random.default_rng(0)
    for detail in interp.get_input_details():
        interp.set_tensor(
            detail["index"], _random_input(list(detail["shape"]), np.dtype(detail["dtype"]), rng, value_range)
        )
    return _measure(interp.invoke, settings, init_ms, "host-litert")


HOST_ENGINES: dict[str, Callable[[Path, str, BenchSettings, tuple[float, float] | None], Measurement]] = {
    "onnx": run_ort,
    "ort": run_ort,
    "tflite": run_tflite,
}


def host_info() -> DeviceInfo:
    cpu = platform.processor() or None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return DeviceInfo(
        serial=HOST,
        model=f"{cpu or 'unknown CPU'} x{os.cpu_count()}",
        soc=cpu,
        abi=platform.machine(),
        android=platform.platform(),
        kind="host",
    )


def _versions() -> list[ToolInfo]:
    from importlib.metadata import PackageNotFoundError, version

    infos = []
    for tool, package in (("ort", "onnxruntime"), ("tflite", "ai-edge-litert")):
        try:
            infos.append(ToolInfo(name=tool, version=f"{package} {version(package)}"))
        except PackageNotFoundError:
            infos.append(ToolInfo(name=tool, version=f"{package} not installed"))
    return infos


def run_host(selection: Selection, settings: BenchSettings, run_id: str) -> RunResult:
    result = RunResult(
        run_id=run_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        bundle=selection.bundle,
        settings=settings,
        tools=_versions(),
    )
    for artifact in selection.artifacts:
        engine = HOST_ENGINES.get(artifact.ref.format)
        for provider in settings.providers:
            cell = Cell(
                device=HOST,
                artifact=artifact.ref,
                tool=tool.name if (tool := TOOLS.for_format(artifact.ref.format)) else "none",
                provider=provider,
                status="missing",
            )
            if engine is None:
                cell.status, cell.error = "skipped", f"no host engine runs .{artifact.ref.format}"
            else:
                try:
                    cell.measurement = engine(artifact.local_path, provider, settings, artifact.input_range)
                    cell.status = "ok"
                except ProviderUnavailable as exc:
                    cell.status, cell.error = "skipped", str(exc)
                except HostEngineError as exc:
                    cell.status, cell.error = "failed", str(exc)
            log.info("host: %s [%s] %s", artifact.ref.path, provider, cell.status)
            result.cells.append(cell)
    result.devices = [DeviceRun(device=host_info(), status="complete")]
    return result
