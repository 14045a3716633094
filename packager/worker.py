"""Run one step in a forked child process, so that steps whose tools hold the GIL (onnx2tf and
TensorFlow, ORT quantization, coremltools) run side by side.

The child is a ``fork`` of the build process: the step's closure, its upstream metadata and the
imported modules are inherited, nothing is pickled but what comes back. It writes the step's files
into the scratch folder the parent made, sends its log records, progress and metadata (or its error)
through a pipe, and sends the converters' own stdout/stderr to a per-step tool log instead of the
terminal. It dies with the parent (``PR_SET_PDEATHSIG``), so a killed build leaves no orphan
converting into a folder nobody will store.

Fork, not spawn: a step's ``run`` is a closure over the config (not importable by name), and a
spawned interpreter would pay the imports again. The parent must not have threads holding locks at
fork time: the CLI's live display refreshes from the scheduler loop, not from a thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from packager.errors import PackagerError, StepError
from packager.steps import PendingStep, StepContext, StepRunner

log = logging.getLogger(__name__)

_FORK = multiprocessing.get_context("fork")


@dataclass(frozen=True)
class CarriedError:
    """A PackagerError as it crosses the pipe: its class by name, text, attributes and traceback.

    The errors build their message in ``__init__`` from several arguments, so pickling the object
    itself would fail to unpickle; this rebuilds the same class with the same text and fields.
    """

    module: str
    qualname: str
    text: str
    state: bytes
    traceback: str

    @classmethod
    def of(cls, exc: BaseException, error: PackagerError) -> CarriedError:
        """``error``: what the step failed with (``StepRunner.step_error`` of ``exc``)."""
        tb = "".join(traceback.format_exception(exc))
        try:
            state = pickle.dumps(vars(error))
        except Exception:  # an attribute that does not pickle: the text still says what failed
            state = pickle.dumps({})
        return cls(type(error).__module__, type(error).__qualname__, str(error), state, tb)

    def rebuild(self) -> PackagerError:
        error_type = getattr(importlib.import_module(self.module), self.qualname)
        error = error_type.__new__(error_type)
        Exception.__init__(error, self.text)
        error.__dict__.update(pickle.loads(self.state))
        return error


class _PipeLogHandler(logging.Handler):
    """Sends each record, formatted, to the parent, which hands it to its own loggers."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(logging.DEBUG)
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            exc_text = logging.Formatter().formatException(record.exc_info) if record.exc_info else None
            fields = {
                "name": record.name,
                "levelno": record.levelno,
                "levelname": record.levelname,
                "msg": record.getMessage(),
                "created": record.created,
                "exc_text": exc_text,
            }
            self.conn.send(("log", fields))
        except Exception:
            self.handleError(record)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG = 1)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: an orphan finishes its step
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def _temp_files_in(folder: Path) -> None:
    """Point the step's temporary files, and those of the tools it starts, into its scratch folder.

    Tools clean their temporaries at interpreter exit (coremltools' in-memory ML Programs are temporary
    ``.mlpackage`` folders, TensorFlow autograph writes ``__autograph_generated_file*.py``, both removed
    by ``atexit``), and a worker ends with ``os._exit``, which runs no ``atexit``: they piled up in the
    system temp folder (39 MB of ``tmp*.mlpackage`` per example build). The scratch folder is removed
    when the step ends, or with a killed build's scratch by the next build (cache_lease).
    """
    folder.mkdir()
    tempfile.tempdir = str(folder)  # this process only: it is a fork, and it ends with the step
    os.environ["TMPDIR"] = str(folder)  # for kotlinc, java and the like started by the step


def _child(
    pending: PendingStep, context: StepContext, conn: Connection, tool_log: Path, runner: StepRunner
) -> None:  # pragma: no cover - runs in the forked process (its effects are tested)
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it kills us
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(tool_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # Python-level writers too: the parent's sys.stdout may not be fd 1 (a test runner's capture).
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    _temp_files_in(context.out.parent / "tmp")
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_PipeLogHandler(conn))

    def progress(label: str, done: int, total: int) -> None:
        conn.send(("progress", label, done, total))

    context = StepContext(context.out, context.inputs, context.outputs, progress)
    try:
        meta = pending.step.run(context)
        conn.send(("done", json.dumps(meta, sort_keys=True, default=str)))
    except BaseException as exc:
        conn.send(("error", CarriedError.of(exc, runner.step_error(pending.step, exc))))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        conn.close()


class Worker:
    """One step running in a forked child; the scheduler polls :attr:`conn` and calls :meth:`pump`."""

    def __init__(
        self, pending: PendingStep, context: StepContext, scratch: Path, tool_log: Path, runner: StepRunner
    ) -> None:
        self.pending = pending
        self.scratch = scratch
        self.tool_log = tool_log
        self.progress = context.progress
        self.meta: dict[str, object] | None = None
        self.error: PackagerError | None = None
        tool_log.parent.mkdir(parents=True, exist_ok=True)
        receive, send = _FORK.Pipe(duplex=False)
        self.process = _FORK.Process(
            target=_child,
            args=(pending, context, send, tool_log, runner),
            name=pending.step.name,
            daemon=True,
        )
        self.started = time.perf_counter()
        self.process.start()
        send.close()  # only the child holds the sending end now: its exit is our EOF
        self.conn = receive

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def pump(self) -> bool:
        """Handle what the child sent so far; True once it has exited (meta or error is then set)."""
        try:
            while self.conn.poll():
                self._handle(self.conn.recv())
        except EOFError:
            self.process.join()
            self.conn.close()
            if self.meta is None and self.error is None:
                self.error = self._died()
            return True
        return False

    def _handle(self, message: tuple[object, ...]) -> None:
        kind = message[0]
        if kind == "log":
            fields = message[1]
            assert isinstance(fields, dict)
            record = logging.makeLogRecord({**fields, "args": None})
            logging.getLogger(record.name).handle(record)
        elif kind == "progress":
            label, done, total = message[1:]
            self.progress(str(label), int(done), int(total))  # type: ignore[call-overload]
        elif kind == "done":
            self.meta = json.loads(str(message[1]))
        elif kind == "error":
            carried = message[1]
            assert isinstance(carried, CarriedError)
            log.info("%s failed:\n%s", self.pending.step.name, carried.traceback)
            self.error = carried.rebuild()

    def _died(self) -> StepError:
        code = self.process.exitcode
        how = (
            f"was killed by {signal.Signals(-code).name}"
            if code is not None and code < 0
            else f"exited with code {code} without a result"
        )
        return StepError(
            self.pending.step.name,
            f"its worker process {how} (out of memory, or a crash in a native tool)",
            f"see the tool's output in {self.tool_log}, or rerun with --jobs 1 -v to run it in the build "
            "process",
        )

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()
