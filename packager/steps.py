"""Steps and their content-addressed cache.

A step is a pure function of its inputs' content, its parameters and the versions of the tools it
runs. Its key is the sha256 of those (sorted JSON); its outputs land in ``<cache>/<key>/out``. A hit
skips the work; a miss says why (first run, which input changed, which parameter, which tool).
Outputs are written to a temporary folder and renamed into place, so an interrupted step never
leaves a half entry, and a corrupt entry is a logged miss, never a crash.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packager.cache import Cache, Hasher
from packager.errors import PackagerError, StepError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


@dataclass(frozen=True)
class StepOutput:
    """A file produced by an earlier step, resolved when the plan runs."""

    step: str
    file: str


@dataclass
class StepContext:
    out: Path
    inputs: dict[str, Path]
    outputs: dict[str, dict[str, object]]
    """Metadata of every step already run, by name (for steps that need an upstream's facts)."""
    progress: Callable[[str, int, int], None]


@dataclass(frozen=True)
class Step:
    name: str
    kind: str
    """Group for display and for ``--only`` style filtering: prepare, data, quantize, validate."""
    run: Callable[[StepContext], dict[str, object]]
    inputs: dict[str, Path | StepOutput] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    """Steps whose metadata this one reads, beyond those named in ``inputs``."""
    required: bool = True
    """False when the build can go on without this step: its failure fails the products (variants)
    made downstream of it, whose steps are skipped, and the rest of the build still runs. Steps of
    one variant, and the calibration only static variants read, are not required; the FP32
    reference and its evaluation data are."""

    def depends_on(self) -> list[str]:
        ups = [v.step for v in self.inputs.values() if isinstance(v, StepOutput)]
        return sorted({*ups, *self.after})


@dataclass(frozen=True)
class StepResult:
    name: str
    key: str
    out: Path
    meta: dict[str, object]
    cached: bool
    reason: str
    seconds: float


@dataclass(frozen=True)
class StepFailure:
    """A step that failed (``root == name``) or was skipped because an upstream step failed."""

    name: str
    root: str
    """The step whose own work failed."""
    error: PackagerError

    @property
    def skipped(self) -> bool:
        return self.root != self.name


@functools.cache
def packager_fingerprint() -> str:
    """sha256 (12 hex) of packager's own source files: every ``.py`` under the package
    (:func:`tree_fingerprint`).

    The version number alone does not change between commits, so a cache entry written by older
    code (another step-record layout, another metric) would be reused by newer code: the code
    itself is an input of every step. All of it, not an import closure: the steps' bodies reach the
    recipes by name (:class:`packager.quantize.registry.Entry`). Computed once per process (the code
    cannot change under it).
    """
    return tree_fingerprint(Path(__file__).resolve().parent)


def tree_fingerprint(root: Path) -> str:
    """sha256 (12 hex) of every ``.py`` file under ``root``: relative paths and bytes, in path order."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@functools.cache
def code_fingerprint(module: str) -> str:
    """sha256 (12 hex) of the source files ``module`` can run: its own file and, transitively, every
    module of its top-level package it imports (anywhere in the file, lazy imports included), with the
    ``__init__.py`` of each package on the way. A platform target's step bodies are code outside
    packager: editing them must re-run their steps like editing packager does, and editing the iOS
    target must not re-run Android's steps (issue 11: exact invalidation). Static imports only: code
    reached through ``importlib`` by name is not seen."""
    files = _import_closure(module)
    root = _package_root(module.split(".", 1)[0])
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _package_root(top: str) -> Path:
    """The folder holding the top-level package (or module) ``top``."""
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        raise ValueError(f"cannot find the source of {top!r}")
    origin = Path(spec.origin)
    return origin.parent.parent if spec.submodule_search_locations else origin.parent


def _module_file(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _import_closure(module: str) -> set[Path]:
    top = module.split(".", 1)[0]
    root = _package_root(top)
    seen: set[tuple[str, bool]] = set()
    files: set[Path] = set()
    todo = [(module, True)]  # (module, whether its function-level imports count)
    while todo:
        name, deep = todo.pop()
        if (name, deep) in seen:
            continue
        seen.add((name, deep))
        parts = name.split(".")
        # Importing a.b.c runs a/__init__ and a/b/__init__, but not the imports inside their functions.
        todo += [(".".join(parts[:i]), False) for i in range(1, len(parts))]
        path = _module_file(root, name)
        if path is None:
            continue
        files.add(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo += _imports_in(path, package, top, deep, root)
    return files


_IMPORT = re.compile(
    r"^(?P<indent>[ \t]*)(?:from[ \t]+(?P<base>\.*[\w.]*)[ \t]+import[ \t]+(?P<names>\([^)]*\)|[^\n#]*)"
    r"|import[ \t]+(?P<modules>[^\n#]*))",
    re.MULTILINE,
)


@functools.cache
def _import_statements(path: Path) -> tuple[tuple[bool, str, tuple[str, ...]], ...]:
    """Each import statement of a source file: (at module level, ``from`` base or "", names). A regex,
    not ``ast``: a no-op rebuild fingerprints the targets' code, and parsing it costs ~0.15 s. It may
    also match an import written inside a string: that only adds a file to the fingerprint."""
    found = []
    for match in _IMPORT.finditer(path.read_text(encoding="utf-8")):
        top_level = not match.group("indent")
        if match.group("modules") is not None:
            names = tuple(n.split()[0] for n in match.group("modules").split(",") if n.strip())
            found.append((top_level, "", names))
        else:
            listed = match.group("names").strip("() \t").replace("\n", " ")
            names = tuple(n.split()[0] for n in listed.split(",") if n.strip())
            found.append((top_level, match.group("base"), names))
    return tuple(found)


def _imports_in(path: Path, package: str, top: str, deep: bool, root: Path) -> list[tuple[str, bool]]:
    """Modules of package ``top`` that ``path`` imports, each with whether its function-level imports
    count (only its module-level statements unless ``deep``). ``from pkg import x`` runs pkg's
    module-level code and, when x is a submodule, x; pkg's functions count only when a name imported
    from it is not a submodule (a function or class of pkg that may be called)."""
    found: list[tuple[str, bool]] = []
    for top_level, base, names in _import_statements(path):
        if not (deep or top_level):
            continue
        if not base:
            found += [(n, True) for n in names if n.split(".", 1)[0] == top]
            continue
        level = len(base) - len(base.lstrip("."))
        if level:
            anchor = package.split(".")[: len(package.split(".")) - level + 1]
            base = ".".join([*anchor, base[level:]] if base[level:] else anchor)
        if base.split(".", 1)[0] != top:
            continue
        submodules = [n for n in names if _module_file(root, f"{base}.{n}") is not None]
        found += [(f"{base}.{n}", True) for n in submodules]
        found.append((base, len(submodules) < len(names)))
    return found


def tool_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed version of each distribution; ``packager`` also carries :func:`packager_fingerprint`."""
    return {name: tool_version(name) for name in names}


@functools.cache
def tool_version(name: str) -> str:
    """One distribution's version, read once per process (each lookup scans sys.path: ~1 ms, times
    every tool of every step on a no-op rebuild)."""
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
    return f"{version}+{packager_fingerprint()}" if name == "packager" else version


def step_key(
    name: str, input_hashes: dict[str, str], params: dict[str, object], tools: dict[str, str]
) -> str:
    payload = {"format": CACHE_FORMAT, "step": name, "inputs": input_hashes, "params": params, "tools": tools}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def why_rerun(previous: dict[str, object] | None, current: dict[str, object]) -> str:
    """A short human reason a step is not cached, comparing with the last run of the same step."""
    if previous is None:
        return "first run"
    reasons = []
    for section in ("inputs", "params", "tools"):
        old, new = previous.get(section, {}), current.get(section, {})
        assert isinstance(old, dict) and isinstance(new, dict)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            label = {"inputs": "input", "params": "parameter", "tools": "tool version"}[section]
            shown = ", ".join(changed[:3]) + (f" (+{len(changed) - 3} more)" if len(changed) > 3 else "")
            reasons.append(f"{label} changed: {shown}")
    return "; ".join(reasons) or "cache entry missing"


@dataclass(frozen=True)
class PendingStep:
    """A step whose key missed the cache: what running it needs."""

    step: Step
    key: str
    inputs: dict[str, Path]
    record: dict[str, object]
    """Its inputs' hashes, parameters and tool versions, remembered for the next run's ``why_rerun``."""
    reason: str


class StepRunner:
    """Keys steps, answers hits from the cache, and runs misses (in this process with :meth:`execute`,
    or elsewhere: :meth:`scratch`, :meth:`context`, then :meth:`finish` with the step's metadata)."""

    def __init__(
        self,
        cache: Cache,
        progress: Callable[[str, int, int], None] | None = None,
        hasher: Hasher | None = None,
    ) -> None:
        self.cache = cache
        # Input digests kept across builds (fast no-ops); the build shares its plan's hasher.
        self.hasher = hasher or Hasher(memo=cache.memo_file)
        self.progress = progress or (lambda label, done, total: None)
        self.results: dict[str, StepResult] = {}

    def resolve(self, value: Path | StepOutput) -> Path:
        if isinstance(value, StepOutput):
            return self.results[value.step].out / value.file
        return value

    def lookup(self, step: Step) -> StepResult | PendingStep:
        """The cached result of ``step`` (recorded as run), or what running it needs. Every step it
        depends on must have a result already."""
        inputs = {k: self.resolve(v) for k, v in step.inputs.items()}
        hashes = {k: self.hasher.path(p) for k, p in inputs.items()}
        tools = tool_versions(step.tools)
        module = getattr(step.run, "__module__", None) or "packager"
        if module.split(".", 1)[0] != "packager":  # packager's own code is in its tool version already
            tools[f"code:{module.split('.', 1)[0]}"] = code_fingerprint(module)
        key = step_key(step.name, hashes, step.params, tools)
        record: dict[str, object] = {"inputs": hashes, "params": step.params, "tools": tools}
        meta = self.cache.load(key, self.hasher)
        if meta is None:
            reason = why_rerun(self.cache.last_run(step.name), record)
            log.info("%s runs: %s", step.name, reason)
            return PendingStep(step, key, inputs, record, reason)
        if self.cache.last_run(step.name) != normalized_meta(record):  # a no-op rewrites no record
            self.cache.remember(step.name, record)
        result = StepResult(step.name, key, self.cache.entry(key) / "out", meta, True, "cached", 0.0)
        self.results[step.name] = result
        return result

    def run(self, step: Step) -> StepResult:
        found = self.lookup(step)
        return found if isinstance(found, StepResult) else self.execute(found)

    def scratch(self) -> Path:
        """A fresh temporary folder under the cache root with an empty ``out/`` for one step's files;
        the caller removes it (``finish`` moves ``out/`` into the cache)."""
        tmp = self.cache.mkdtemp()
        (tmp / "out").mkdir()
        return tmp

    def context(self, pending: PendingStep, out: Path) -> StepContext:
        return StepContext(out, pending.inputs, {n: r.meta for n, r in self.results.items()}, self.progress)

    def finish(self, pending: PendingStep, out: Path, meta: dict[str, object], seconds: float) -> StepResult:
        """Store a step's files and metadata (already JSON-normalized) under its key, and record it."""
        final = self.cache.store(pending.key, out, meta, self.hasher)
        self.cache.remember(pending.step.name, pending.record)
        result = StepResult(pending.step.name, pending.key, final, meta, False, pending.reason, seconds)
        self.results[pending.step.name] = result
        return result

    def step_error(self, step: Step, exc: BaseException) -> PackagerError:
        """What a step that raised ``exc`` failed with, in this process or a worker: a PackagerError as
        raised, a full disk as the cache's :class:`CacheFull`, anything else as a :class:`StepError`."""
        if isinstance(exc, PackagerError):
            return exc
        return self.cache.disk_full_error(exc) or step_failed(step, exc)

    def execute(self, pending: PendingStep) -> StepResult:
        """Run a step in this process."""
        tmp = self.scratch()
        start = time.perf_counter()
        try:
            meta = normalized_meta(pending.step.run(self.context(pending, tmp / "out")))
            return self.finish(pending, tmp / "out", meta, time.perf_counter() - start)
        except PackagerError:
            raise
        except Exception as exc:
            raise self.step_error(pending.step, exc) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def normalized_meta(meta: dict[str, object]) -> dict[str, object]:
    """Round-trip through sorted JSON, so that a fresh result is identical to a cached one."""
    return json.loads(json.dumps(meta, sort_keys=True, default=str))


def step_failed(step: Step, exc: BaseException) -> StepError:
    """The error for a tool raising something that is not a PackagerError inside a step."""
    return StepError(step.name, f"{type(exc).__name__}: {exc}", "rerun with -v for the traceback")
