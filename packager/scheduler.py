"""Run a plan's steps, as many at once as ``jobs`` allows, in dependency order.

A step starts once every step it depends on has a result. Cache hits are answered in this process as
soon as they are ready; misses run in this process with ``jobs == 1`` and in forked workers
(:mod:`packager.worker`) otherwise. Among ready misses the one heading the longest chain of work
goes first (durations remembered from earlier builds, one unit per step when none are known), so
the long conversions start early and the short steps fill the other cores.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from packager.cache import CacheFull
from packager.errors import PackagerError
from packager.steps import PendingStep, Step, StepFailure, StepResult, StepRunner, normalized_meta
from packager.worker import Worker

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25
"""How often the observer's ``waiting`` hook runs while workers are busy (the live display's rate)."""


@dataclass(frozen=True)
class PlanOutcome:
    results: dict[str, StepResult]
    failures: dict[str, StepFailure]
    """Failed steps and the steps skipped because of them, by step name."""


def _ignore(*_: object) -> None:
    return None


@dataclass(frozen=True)
class Observer:
    """What the caller (the CLI) is told while the plan runs; every hook runs in this process."""

    started: Callable[[Step], None] = _ignore
    """A step that missed the cache starts running."""
    finished: Callable[[Step, StepResult | StepFailure], None] = _ignore
    """A step has a result: cached, ran, failed, or skipped because an upstream step failed."""
    waiting: Callable[[], None] = _ignore
    """Called every ``TICK_SECONDS`` while workers run (to refresh a live display)."""


FORK_UNSAFE_MODULES = ("tensorflow", "torch")
"""Libraries whose thread pools do not survive ``fork()``: with one loaded in the build process, a forked
worker that uses it can hang forever on a lock a thread held at fork time (seen: a saved-model step
stuck in a futex, forked from a process that had run TensorFlow). The CLI never loads them in the build
process; a library caller that did gets its steps run one at a time in its own process instead."""


def fork_hazard() -> str | None:
    """Why steps cannot run in forked workers from this process, or None when they can."""
    if sys.platform != "linux":
        return f"forked workers are only used on Linux (this is {sys.platform})"
    loaded = [name for name in FORK_UNSAFE_MODULES if name in sys.modules]
    if loaded:
        return f"{loaded[0]} is loaded in this process and its thread pools do not survive fork()"
    return None


def default_jobs() -> int:
    """The cores this process may use (``sched_getaffinity`` honours a CI runner's CPU limit)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def downstream(steps: list[Step], name: str) -> list[Step]:
    """Every step that needs ``name``'s output or metadata, directly or through others."""
    needed, found = {name}, []
    for step in steps:  # the plan is in dependency order
        if needed.intersection(step.depends_on()):
            needed.add(step.name)
            found.append(step)
    return found


def _priorities(steps: list[Step], durations: dict[str, float]) -> dict[str, float]:
    """Each step's own expected seconds plus the longest chain of work that waits on it."""
    dependents: dict[str, list[str]] = {s.name: [] for s in steps}
    for step in steps:
        for up in step.depends_on():
            dependents.setdefault(up, []).append(step.name)
    priority: dict[str, float] = {}
    for step in reversed(steps):  # dependents come later in the plan
        after = [priority[d] for d in dependents[step.name] if d in priority]
        priority[step.name] = durations.get(step.name, 1.0) + max(after, default=0.0)
    return priority


@dataclass
class _Run:
    steps: list[Step]
    runner: StepRunner
    observer: Observer
    jobs: int
    failures: dict[str, StepFailure] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    running: dict[str, Worker] = field(default_factory=dict)
    pending: dict[str, PendingStep] = field(default_factory=dict)
    ran: dict[str, float] = field(default_factory=dict)

    def complete(self, step: Step, outcome: StepResult | StepFailure) -> None:
        self.done.add(step.name)
        self.observer.finished(step, outcome)

    def fail(self, step: Step, error: PackagerError) -> None:
        """A step's own failure: fatal when it is required or the cache's disk is full (every later
        step would fail the same way), else it fails what depends on it."""
        if step.required or isinstance(error, CacheFull):
            raise error
        failure = self.failures[step.name] = StepFailure(step.name, step.name, error)
        for later in downstream(self.steps, step.name):
            self.failures.setdefault(later.name, StepFailure(later.name, step.name, error))
        self.complete(step, failure)

    def ready(self, waiting: list[Step]) -> list[Step]:
        return [s for s in waiting if all(d in self.done for d in s.depends_on())]

    def start(self, pending: PendingStep) -> None:
        step = pending.step
        self.observer.started(step)
        if self.jobs == 1:
            try:
                result = self.runner.execute(pending)
            except PackagerError as exc:
                self.fail(step, exc)
                return
            self.ran[step.name] = result.seconds
            self.complete(step, result)
            return
        scratch = self.runner.scratch()
        tool_log = self.runner.cache.root / "logs" / "steps" / f"{_file_name(step.name)}.log"
        context = self.runner.context(pending, scratch / "out")
        self.running[step.name] = Worker(pending, context, scratch, tool_log, self.runner)

    def collect(self, worker: Worker) -> None:
        step = worker.pending.step
        del self.running[step.name]
        try:
            if worker.error is not None:
                self.fail(step, worker.error)
                return
            assert worker.meta is not None
            try:
                result = self.runner.finish(
                    worker.pending, worker.scratch / "out", normalized_meta(worker.meta), worker.seconds
                )
            except PackagerError as exc:  # storing failed (a full disk): the step failed
                self.fail(step, exc)
                return
            self.ran[step.name] = result.seconds
            self.complete(step, result)
        finally:
            shutil.rmtree(worker.scratch, ignore_errors=True)

    def stop_all(self) -> None:
        for worker in self.running.values():
            worker.kill()
            shutil.rmtree(worker.scratch, ignore_errors=True)
        self.running.clear()


def _file_name(step_name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in step_name)


def run_plan(
    steps: list[Step], runner: StepRunner, observer: Observer | None = None, jobs: int = 1
) -> PlanOutcome:
    """Run every step, ``jobs`` at a time; a product's failure is recorded and the rest goes on.

    A step that is not ``required`` failing with a :class:`PackagerError` fails the variants made
    downstream of it, whose steps are then skipped. A required step's failure (the FP32 reference,
    its evaluation data) leaves nothing to measure against: the running workers are stopped and that
    error is raised. So is KeyboardInterrupt, after stopping them.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    hazard = fork_hazard() if jobs > 1 else None
    if hazard is not None:
        log.info("steps run one at a time in this process: %s", hazard)
        jobs = 1
    durations_file = runner.cache.root / "durations.json"
    durations = _read_durations(durations_file)
    priority = _priorities(steps, durations)
    run = _Run(steps, runner, observer or Observer(), jobs)
    waiting = list(steps)
    try:
        while waiting or run.pending or run.running:
            for step in run.ready(waiting):
                waiting.remove(step)
                if step.name in run.failures:
                    run.complete(step, run.failures[step.name])
                    continue
                try:
                    found = runner.lookup(step)
                except PackagerError as exc:  # an input vanished since planning
                    run.fail(step, exc)
                    continue
                if isinstance(found, StepResult):
                    run.complete(step, found)
                else:
                    run.pending[step.name] = found
            for name in sorted(run.pending, key=lambda n: -priority[n]):
                if len(run.running) >= jobs:
                    break
                run.start(run.pending.pop(name))
                if jobs == 1:
                    break  # a finished step may have made cheaper (cached) steps ready: look again
            if run.running:
                _wait(run)
            elif not run.pending and waiting and not run.ready(waiting):
                names = ", ".join(s.name for s in waiting)
                raise ValueError(f"steps wait on steps that are not in the plan: {names}")
    except BaseException:
        run.stop_all()
        raise
    finally:
        if run.ran:
            _write_durations(durations_file, {**durations, **run.ran})
    return PlanOutcome(runner.results, run.failures)


def _wait(run: _Run) -> None:
    workers = {w.conn: w for w in run.running.values()}
    ready = wait(list(workers), timeout=TICK_SECONDS)
    for conn in ready:
        worker = workers[conn]  # type: ignore[index]
        if worker.pump():
            run.collect(worker)
    run.observer.waiting()


def _read_durations(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_durations(path: Path, durations: dict[str, float]) -> None:
    """Seconds of each step's last real run; only a scheduling hint, so a lost race is harmless."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({k: round(v, 2) for k, v in sorted(durations.items())}))
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("could not record step durations in %s: %s", path, exc)
