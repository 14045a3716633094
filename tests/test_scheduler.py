"""The scheduler: steps run `jobs` at a time in worker processes, in dependency order, and a failure
anywhere is reported as the step's own error."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import types
from pathlib import Path

import pytest

from packager.cache import Cache
from packager.errors import DataError, StepError
from packager.scheduler import Observer, _priorities, fork_hazard, run_plan
from packager.steps import Step, StepContext, StepFailure, StepOutput, StepResult, StepRunner

log = logging.getLogger("packager.tests.scheduler")

pytestmark = pytest.mark.forks


def _timed(name: str, seconds: float = 0.0, **kwargs: object) -> Step:
    """A step that records its pid and start/end times (time.time, s) in ``times.json``."""

    def run(ctx: StepContext) -> dict[str, object]:
        began = time.time()
        time.sleep(seconds)
        record = {"pid": os.getpid(), "start": began, "end": time.time()}
        (ctx.out / "times.json").write_text(json.dumps(record))
        return record

    return Step(name, "test", run=run, params={"seconds": seconds}, **kwargs)  # type: ignore[arg-type]


def _runner(tmp_path: Path) -> StepRunner:
    return StepRunner(Cache(tmp_path / "cache"))


def test_independent_steps_run_at_the_same_time_in_worker_processes(tmp_path: Path) -> None:
    outcome = run_plan([_timed("a", 1.0), _timed("b", 1.0)], _runner(tmp_path), jobs=2)
    a, b = (outcome.results[n].meta for n in ("a", "b"))
    assert {a["pid"], b["pid"]}.isdisjoint({os.getpid()}) and a["pid"] != b["pid"]
    assert a["start"] < b["end"] and b["start"] < a["end"]  # the two intervals overlap


def test_with_one_job_steps_run_one_after_another_in_the_build_process(tmp_path: Path) -> None:
    outcome = run_plan([_timed("a", 0.2), _timed("b", 0.2)], _runner(tmp_path), jobs=1)
    a, b = (outcome.results[n].meta for n in ("a", "b"))
    assert a["pid"] == b["pid"] == os.getpid()
    assert a["end"] <= b["start"] or b["end"] <= a["start"]


def test_a_step_starts_only_after_the_steps_it_reads(tmp_path: Path) -> None:
    def down(ctx: StepContext) -> dict[str, object]:
        upstream = json.loads(ctx.inputs["times"].read_text())
        return {"start": time.time(), "upstream_end": upstream["end"]}

    steps = [
        _timed("up", 0.5),
        Step("down", "test", run=down, inputs={"times": StepOutput("up", "times.json")}),
        _timed("free", 0.0),
    ]
    outcome = run_plan(steps, _runner(tmp_path), jobs=2)
    assert outcome.results["down"].meta["start"] >= outcome.results["down"].meta["upstream_end"]


def test_a_second_run_finds_every_worker_result_in_the_cache(tmp_path: Path) -> None:
    run_plan([_timed("a"), _timed("b")], _runner(tmp_path), jobs=2)
    again = run_plan([_timed("a"), _timed("b")], _runner(tmp_path), jobs=2)
    assert all(r.cached for r in again.results.values())


def test_worker_log_records_reach_the_build_process_loggers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def talk(ctx: StepContext) -> dict[str, object]:
        log.warning("calibrated %d images in %s", 48, os.getpid())
        return {}

    caplog.set_level(logging.INFO)
    run_plan([Step("talk", "test", run=talk)], _runner(tmp_path), jobs=2)
    [record] = [r for r in caplog.records if r.name == log.name]
    assert record.levelno == logging.WARNING and record.getMessage().startswith("calibrated 48 images in ")
    assert record.getMessage() != f"calibrated 48 images in {os.getpid()}"


def test_worker_progress_reaches_the_callback(tmp_path: Path) -> None:
    def counting(ctx: StepContext) -> dict[str, object]:
        for i in range(3):
            ctx.progress("calibrating", i + 1, 3)
        return {}

    seen: list[tuple[str, int, int]] = []
    runner = StepRunner(Cache(tmp_path / "cache"), lambda *args: seen.append(args))
    run_plan([Step("count", "test", run=counting)], runner, jobs=2)
    assert seen == [("calibrating", 1, 3), ("calibrating", 2, 3), ("calibrating", 3, 3)]


def test_a_tool_s_own_output_goes_to_the_step_s_tool_log_not_the_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    def noisy(ctx: StepContext) -> dict[str, object]:
        print("onnx2tf says hello")
        os.write(2, b"native warning\n")
        return {}

    run_plan([Step("noisy[m]", "test", run=noisy)], _runner(tmp_path), jobs=2)
    out, err = capfd.readouterr()
    assert "onnx2tf says hello" not in out and "native warning" not in err
    text = (tmp_path / "cache" / "logs" / "steps" / "noisy_m_.log").read_text()
    assert "onnx2tf says hello" in text and "native warning" in text


def test_temporary_files_a_worker_leaves_are_removed_with_its_scratch_folder(tmp_path: Path) -> None:
    # Tools clean their temporaries with atexit, which a worker (ending with os._exit) never runs.
    def leaky(ctx: StepContext) -> dict[str, object]:
        import subprocess
        import tempfile

        made = tempfile.mkdtemp(suffix=".mlpackage")
        child = subprocess.run(["mktemp"], capture_output=True, text=True, check=True).stdout.strip()
        return {"made": made, "child": child}

    meta = run_plan([Step("leaky[m]", "test", run=leaky)], _runner(tmp_path), jobs=2).results["leaky[m]"].meta
    for path in (Path(str(meta["made"])), Path(str(meta["child"]))):
        assert path.is_relative_to(tmp_path / "cache") and not path.exists()


def _fails_with(error: BaseException) -> Step:
    def run(ctx: StepContext) -> dict[str, object]:
        raise error

    return Step("bad", "test", run=run, required=False)


def test_a_failing_optional_step_in_a_worker_keeps_its_error_and_skips_what_depends_on_it(
    tmp_path: Path,
) -> None:
    steps = [
        _fails_with(DataError("data/pairs.txt", "line 3 has 2 fields", "write 3 fields")),
        Step("after", "test", run=lambda ctx: {}, inputs={"x": StepOutput("bad", "x")}, required=False),
        _timed("other"),
    ]
    outcome = run_plan(steps, _runner(tmp_path), jobs=2)
    failure = outcome.failures["bad"]
    assert isinstance(failure.error, DataError) and failure.error.path == "data/pairs.txt"
    assert str(failure.error) == "data/pairs.txt: line 3 has 2 fields. Fix: write 3 fields"
    assert outcome.failures["after"].skipped and "other" in outcome.results


def test_a_tool_exception_in_a_worker_is_a_step_error_naming_the_step(tmp_path: Path) -> None:
    outcome = run_plan([_fails_with(RuntimeError("converter crashed"))], _runner(tmp_path), jobs=2)
    error = outcome.failures["bad"].error
    assert isinstance(error, StepError)
    assert "step bad failed: RuntimeError: converter crashed" in str(error)


def test_a_worker_killed_by_a_signal_fails_its_step_and_names_the_signal(tmp_path: Path) -> None:
    def killed(ctx: StepContext) -> dict[str, object]:
        os.kill(os.getpid(), signal.SIGKILL)
        return {}

    outcome = run_plan([Step("oom", "test", run=killed, required=False)], _runner(tmp_path), jobs=2)
    assert "killed by SIGKILL" in str(outcome.failures["oom"].error)
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_a_required_failure_stops_the_running_workers_and_is_raised(tmp_path: Path) -> None:
    def required_failure(ctx: StepContext) -> dict[str, object]:
        time.sleep(0.3)
        raise DataError("data/calibration", "no images", "add images")

    steps = [Step("reference", "test", run=required_failure), _timed("slow", 60.0)]
    began = time.perf_counter()
    with pytest.raises(DataError, match="no images"):
        run_plan(steps, _runner(tmp_path), jobs=2)
    assert time.perf_counter() - began < 30  # the 60 s sibling was stopped, not waited for
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_the_observer_sees_each_run_step_start_then_finish(tmp_path: Path) -> None:
    events: list[tuple[str, str]] = []

    def finished(step: Step, outcome: StepResult | StepFailure) -> None:
        events.append(("finished", step.name))

    observer = Observer(started=lambda step: events.append(("started", step.name)), finished=finished)
    run_plan([_timed("a")], _runner(tmp_path), observer, jobs=2)
    run_plan([_timed("a")], _runner(tmp_path), observer, jobs=2)  # cached: finished only
    assert events == [("started", "a"), ("finished", "a"), ("finished", "a")]


def test_the_longest_chain_of_remembered_work_goes_first() -> None:
    steps = [
        _timed("convert"),
        _timed("validate-tflite", inputs={"m": StepOutput("convert", "x")}),
        _timed("quick"),
    ]
    durations = {"convert": 90.0, "validate-tflite": 2.0, "quick": 5.0}
    priority = _priorities(steps, durations)
    assert priority == {"convert": 92.0, "validate-tflite": 2.0, "quick": 5.0}
    assert _priorities(steps, {})["convert"] == 2.0  # no history: one unit per step of the chain


def test_with_tensorflow_loaded_steps_run_one_at_a_time_in_the_build_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    caplog.set_level(logging.INFO)
    outcome = run_plan([_timed("a"), _timed("b")], _runner(tmp_path), jobs=2)
    assert {r.meta["pid"] for r in outcome.results.values()} == {os.getpid()}
    assert "tensorflow is loaded in this process" in caplog.text


def test_this_process_can_fork_workers() -> None:
    # If this fails, a test before the `forks` tests loaded TensorFlow: the ones above ran in-process.
    assert fork_hazard() is None
