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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from packager.errors import ConfigError


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


def find_check(spec: str, base: Path) -> None:
    """Check, without importing it, that the function ``spec`` names exists: the module or file is
    found and defines that name at top level. The plan calls this on every build: importing the
    check would import what it uses (the example's imports OpenCV, ~25 ms of a 0.6 s no-op), so the
    import itself happens where the check runs (:func:`load_check`, in the validation step).

    Raises:
        ConfigError: as :func:`load_check`, for a malformed spec, a module or file that is not found,
            or a module source that binds no such name (a compiled module is taken on trust).
    """
    if spec.count(":") != 1:
        raise ConfigError("task.check", [f"{spec!r} must be `module:function` or `file.py:function`"])
    module_name, function = spec.split(":")
    path = check_file(spec, base)
    if path is None:
        try:
            found = importlib.util.find_spec(module_name)
        except (ImportError, ValueError) as exc:
            raise ConfigError("task.check", [f"cannot import {module_name!r} ({exc})"]) from None
        if found is None:
            raise ConfigError(
                "task.check", [f"cannot import {module_name!r} (no module named {module_name!r})"]
            )
        path = Path(found.origin) if found.origin and found.origin.endswith(".py") else None
        if path is None:
            return
    elif not path.is_file():
        raise ConfigError("task.check", [f"cannot import {module_name!r} (no file {path})"])
    try:
        names = _top_level_names(path)
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise ConfigError("task.check", [f"cannot import {module_name!r} ({exc})"]) from None
    if names is not None and function not in names:
        raise ConfigError("task.check", [f"{module_name!r} has no function {function!r}"])


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


def load_check(spec: str, base: Path) -> TaskCheck:
    """The function ``spec`` names; ``base`` is the config's folder, for ``file.py:function`` specs.

    Raises:
        ConfigError: the spec is not ``module:function``, or the module or function cannot be found.
    """
    if spec.count(":") != 1:
        raise ConfigError("task.check", [f"{spec!r} must be `module:function` or `file.py:function`"])
    module_name, function = spec.split(":")
    path = check_file(spec, base)
    try:
        if path is not None:
            loader = importlib.util.spec_from_file_location(f"packager_task_{path.stem}", path)
            if loader is None or loader.loader is None or not path.is_file():
                raise ImportError(f"no file {path}")
            module = importlib.util.module_from_spec(loader)
            sys.modules[loader.name] = module
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except (ImportError, SyntaxError) as exc:
        raise ConfigError("task.check", [f"cannot import {module_name!r} ({exc})"]) from None
    found = getattr(module, function, None)
    if not callable(found):
        raise ConfigError("task.check", [f"{module_name!r} has no function {function!r}"])
    return found
