"""Task-level checks: turn a model's outputs into what the app uses (boxes, labels, strings) and
compare FP32 with a variant at that level, beside the tensor metrics.

A check is a plain function named in the config as ``task = { check = "module:function" }`` (an
importable module, or a ``.py`` file relative to packager.toml)::

    def check(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
              context: TaskContext) -> list[TaskMetric]: ...

``reference`` and ``candidate`` hold every output by name over the evaluation inputs ([N, ...],
float32). The metrics it returns are shown in the report, and ``task.gates`` may gate them.
packager ships :mod:`packager.tasks.topk` (classifiers); the faceid example ships a YuNet decoder.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from packager.errors import ConfigError, StepError, first_line


@dataclass(frozen=True)
class TaskContext:
    inputs: np.ndarray
    """The preprocessed evaluation inputs, float32 [N, *input_shape[1:]], exactly as the model got them."""
    size: tuple[int, int]
    """The model's input (height, width) in pixels."""
    layout: str
    """``NCHW`` or ``NHWC``."""


@dataclass(frozen=True)
class TaskMetric:
    name: str
    value: float | None
    """None when the check cannot compute it on this data (never an invented number)."""
    higher_is_better: bool
    description: str
    """What it measures, with units, in one line for the report."""


TaskCheck = Callable[[dict[str, np.ndarray], dict[str, np.ndarray], TaskContext], list[TaskMetric]]


def check_file(spec: str, base: Path) -> Path | None:
    """The ``.py`` file a ``file.py:function`` spec names (resolved against ``base``), else None."""
    module = spec.rsplit(":", 1)[0]
    return (base / module).resolve() if module.endswith(".py") else None


_RECEIVES = (
    "it receives `reference` and `candidate`, each a dict of the model's outputs by name ({outputs}) as "
    "float32 [N, ...], and `context`, a TaskContext (inputs, size, layout)"
)
"""What a check is called with, for the fix of a check that raised."""


def find_check(spec: str, base: Path, where: str = "task.check") -> None:
    """Check, without importing it, that the function ``spec`` names exists: the module or file is
    found and defines that name at top level. The plan calls this on every build: importing the
    check would import what it uses (the example's imports OpenCV, ~25 ms of a 0.6 s no-op), so the
    import itself happens where the check runs (:func:`load_check`, in the validation step).
    ``where`` is the field errors name: the config file and model (``packager.toml [models] 'm'.task.check``).

    Raises:
        ConfigError: as :func:`load_check`, for a malformed spec, a module or file that is not found,
            a file with a syntax error, or a module source that binds no such name (a compiled module
            is taken on trust).
    """
    module_name, function = _split(spec, where)
    path = check_file(spec, base)
    if path is None:
        try:
            found = importlib.util.find_spec(module_name)
        except ModuleNotFoundError as exc:
            raise _no_module(module_name, function, exc.name or module_name, base, where) from None
        except (ImportError, ValueError) as exc:
            raise _error(where, f"cannot import {module_name!r} ({exc})", "fix the module name") from None
        if found is None:
            raise _no_module(module_name, function, module_name, base, where)
        path = Path(found.origin) if found.origin and found.origin.endswith(".py") else None
        if path is None:
            return
    elif not path.is_file():
        raise _no_file(module_name, path, base, where)
    try:
        names = _top_level_names(path)
    except SyntaxError as exc:
        raise _syntax_error(module_name, exc, path, base, where) from None
    except UnicodeDecodeError:
        fix = f"save {_shown(path, base)} as UTF-8"
        raise _error(where, f"cannot import {module_name!r}: not UTF-8 text", fix) from None
    except OSError as exc:
        problem = f"cannot import {module_name!r}: cannot read {_shown(path, base)} ({exc.strerror or exc})"
        raise _error(where, problem, "make the file readable") from None
    if names is not None and function not in names:
        raise _no_function(module_name, function, names, path, base, where)


def _top_level_names(path: Path) -> set[str] | None:
    """Names a module binds at top level (defs, classes, assignments, imports); None when it may
    bind more than the source shows (``import *``, a module ``__getattr__``).

    Raises:
        OSError, UnicodeDecodeError, SyntaxError: the file cannot be read or parsed.
    """
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(alias.name == "*" for alias in node.names):
                return None
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        else:
            names.update(
                n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            )
    return None if "__getattr__" in names else names


def load_check(spec: str, base: Path, where: str = "task.check") -> TaskCheck:
    """The function ``spec`` names; ``base`` is the config's folder, for ``file.py:function`` specs;
    ``where`` is the field errors name, as for :func:`find_check`.

    Raises:
        ConfigError: the spec is not ``module:function``, the module or function cannot be found, or
            importing the module fails (a syntax error, an import of something not installed, an
            exception in its top-level code): each names the line of the check's file where known.
    """
    module_name, function = _split(spec, where)
    path = check_file(spec, base)
    if path is not None and not path.is_file():
        raise _no_file(module_name, path, base, where)
    try:
        module = _import(module_name, path)
    except ModuleNotFoundError as exc:
        if path is None and exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise _no_module(module_name, function, exc.name, base, where) from None
        raise _import_failed(module_name, exc, path, base, where) from exc
    except SyntaxError as exc:
        raise _syntax_error(module_name, exc, path, base, where) from None
    except Exception as exc:  # the check's own top-level code: any failure is the user's to see, named
        raise _import_failed(module_name, exc, path, base, where) from exc
    found = getattr(module, function, None)
    if not callable(found):
        names = {n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")}
        raise _no_function(module_name, function, names, _module_file(module_name, path), base, where)
    return found


def check_failed(
    spec: str, base: Path, where: str, check: TaskCheck, exc: Exception, outputs: Iterable[str]
) -> StepError:
    """The error for a task check that raised ``exc`` while it ran on ``outputs`` (the model's output
    names): it names the config file and model (``where``), the innermost line of the check's own file
    the exception passed through, and what a check receives."""
    module_name = spec.split(":")[0]
    code = getattr(check, "__code__", None)
    files = {f for f in (_module_file(module_name, check_file(spec, base)), code and code.co_filename) if f}
    line = _innermost_line(exc, files, base)
    at = f" at {line}" if line else ""
    problem = f"{spec!r} raised {type(exc).__name__}: {first_line(exc)}{at}"
    fix = f"fix the check{at}; " + _RECEIVES.format(outputs=", ".join(outputs) or "none")
    return StepError(where, problem, fix)


def _split(spec: str, where: str) -> tuple[str, str]:
    """``(module, function)`` of a spec.

    Raises:
        ConfigError: the spec is not one ``module:function`` or ``file.py:function``.
    """
    if spec.count(":") != 1 or not all(spec.split(":")):
        fix = (
            "write `file.py:function` for a file beside the config, or `module:function` for an installed one"
        )
        raise _error(where, f"{spec!r} must be `module:function` or `file.py:function`", fix)
    module_name, function = spec.split(":")
    return module_name, function


def _import(module_name: str, path: Path | None) -> object:
    """The module, imported by name, or from ``path`` (under a name of packager's own, so that a file
    named like an installed module does not replace it)."""
    if path is None:
        return importlib.import_module(module_name)
    loader = importlib.util.spec_from_file_location(f"packager_task_{path.stem}", path)
    if loader is None or loader.loader is None:
        raise ImportError(f"no file {path}")
    module = importlib.util.module_from_spec(loader)
    sys.modules[loader.name] = module
    try:
        loader.loader.exec_module(module)
    except BaseException:
        del sys.modules[loader.name]  # a half-run module must not be found by a later import
        raise
    return module


def _module_file(module_name: str, path: Path | None) -> Path | None:
    """The check's source file: ``path`` for a file spec, else the module's (None when not found)."""
    if path is not None:
        return path
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    return Path(found.origin).resolve() if found and found.origin and found.origin.endswith(".py") else None


def _shown(path: Path | str, base: Path) -> str:
    """A file as errors show it: relative to the config's folder when it is inside it."""
    resolved, base = Path(path).resolve(), base.resolve()
    return str(resolved.relative_to(base)) if resolved.is_relative_to(base) else str(path)


def _innermost_line(exc: BaseException, files: Iterable[Path | str], base: Path) -> str | None:
    """``file.py:line`` of the innermost frame of ``exc``'s traceback in one of ``files``, else None."""
    wanted = {Path(f).resolve() for f in files}
    import traceback  # error paths only: not on a no-op build's import path

    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).resolve() in wanted:
            return f"{_shown(frame.filename, base)}:{frame.lineno}"
    return None


def _error(where: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(where, [f"{problem}. Fix: {fix}"])


def _no_module(module_name: str, function: str, missing: str, base: Path, where: str) -> ConfigError:
    """A ``module:function`` spec whose module is not installed; the fix points at a file beside the
    config when there is one by that name (``yunet_check:check`` for ``yunet_check.py``)."""
    beside = Path(*module_name.split(".")).with_suffix(".py")
    if (base / beside).is_file():
        fix = (
            f"write `{beside.as_posix()}:{function}` to load the file {beside.as_posix()} beside the "
            f"config (`{module_name}:{function}` names an installed module)"
        )
    else:
        fix = (
            f"install the package that provides {missing!r}, or write `file.py:{function}` for a file "
            "beside the config"
        )
    return _error(where, f"cannot import {module_name!r} (no module named {missing!r})", fix)


def _no_file(module_name: str, path: Path, base: Path, where: str) -> ConfigError:
    fix = f"fix the file name before the colon (it is relative to the config's folder, {base})"
    return _error(where, f"cannot import {module_name!r} (no file {path})", fix)


def _syntax_error(
    module_name: str, exc: SyntaxError, path: Path | None, base: Path, where: str
) -> ConfigError:
    """A syntax error in the check's file, or in a file it imports (the error's own file is named)."""
    file = exc.filename or (str(path) if path else module_name)
    line = f"{_shown(file, base)}:{exc.lineno}" if exc.lineno else _shown(file, base)
    problem = f"cannot import {module_name!r}: syntax error at {line} ({exc.msg})"
    return _error(where, problem, f"fix the syntax error at {line}")


def _import_failed(
    module_name: str, exc: Exception, path: Path | None, base: Path, where: str
) -> ConfigError:
    """Importing the check's module raised: an import of something not installed, or its top-level code."""
    line = _innermost_line(exc, [f for f in [_module_file(module_name, path)] if f], base)
    at = f" at {line}" if line else ""
    if isinstance(exc, ModuleNotFoundError):
        problem = f"cannot import {module_name!r}: it imports {exc.name!r}{at}, which is not installed"
        fix = f"install the module the check imports ({exc.name!r}), or remove the import{at}"
    elif isinstance(exc, ImportError):
        problem = f"cannot import {module_name!r}: its import{at} failed ({first_line(exc)})"
        fix = f"install a version of {exc.name or 'the package'} that has it, or fix the import{at}"
    else:
        raised = f"{type(exc).__name__}{at}: {first_line(exc)}"
        problem = f"cannot import {module_name!r}: its top-level code raised {raised}"
        fix = f"fix the check's module{at} so that it imports without error"
    return _error(where, problem, fix)


def _no_function(
    module_name: str, function: str, names: Iterable[str], path: Path | None, base: Path, where: str
) -> ConfigError:
    """A module without the function the spec names; the fix offers the closest name it does bind."""
    import difflib  # error paths only

    close = difflib.get_close_matches(function, sorted(names), n=1)
    in_file = f" in {_shown(path, base)}" if path else ""
    fix = (
        f"write `{module_name}:{close[0]}` (the closest name it defines)"
        if close
        else "name a function it defines"
    )
    fix += f", or define `def {function}(reference, candidate, context)`{in_file}"
    return _error(where, f"{module_name!r} has no function {function!r}", fix)
