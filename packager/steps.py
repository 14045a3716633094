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
import json
import logging
import shutil
import tempfile
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


def packager_fingerprint() -> str:
    """sha256 (12 hex) of packager's own source files (:func:`code_fingerprint` of ``packager``).

    The version number alone does not change between commits, so a cache entry written by older
    code (another step-record layout, another metric) would be reused by newer code: the code
    itself is an input of every step. Computed once per process (the code cannot change under it).
    """
    return code_fingerprint("packager")


@functools.cache
def code_fingerprint(module: str) -> str:
    """sha256 (12 hex) of the source of ``module``'s top-level package (every ``.py`` under it), or of
    the module's file when it is not in a package. A platform target's step bodies are code outside
    packager: editing them must re-run their steps like editing packager does."""
    import importlib

    top = importlib.import_module(module.split(".", 1)[0])
    files = getattr(top, "__path__", None)
    paths = sorted(Path(files[0]).rglob("*.py")) if files else [Path(str(top.__file__))]
    root = paths[0].parent if not files else Path(files[0])
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def tool_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed version of each distribution; ``packager`` also carries :func:`packager_fingerprint`."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    if "packager" in versions:
        versions["packager"] += f"+{packager_fingerprint()}"
    return versions


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


class StepRunner:
    def __init__(self, cache: Cache, progress: Callable[[str, int, int], None] | None = None) -> None:
        self.cache = cache
        self.hasher = Hasher()
        self.progress = progress or (lambda label, done, total: None)
        self.results: dict[str, StepResult] = {}

    def resolve(self, value: Path | StepOutput) -> Path:
        if isinstance(value, StepOutput):
            return self.results[value.step].out / value.file
        return value

    def run(self, step: Step) -> StepResult:
        inputs = {k: self.resolve(v) for k, v in step.inputs.items()}
        hashes = {k: self.hasher.path(p) for k, p in inputs.items()}
        tools = tool_versions(step.tools)
        module = getattr(step.run, "__module__", None) or "packager"
        if module.split(".", 1)[0] != "packager":  # packager's own code is in its tool version already
            tools[f"code:{module.split('.', 1)[0]}"] = code_fingerprint(module)
        key = step_key(step.name, hashes, step.params, tools)
        record = {"inputs": hashes, "params": step.params, "tools": tools}
        meta = self.cache.load(key, self.hasher)
        if meta is not None:
            result = StepResult(step.name, key, self.cache.entry(key) / "out", meta, True, "cached", 0.0)
        else:
            reason = why_rerun(self.cache.last_run(step.name), record)
            log.info("%s runs: %s", step.name, reason)
            result = self._execute(step, key, inputs, reason)
        self.cache.remember(step.name, record)
        self.results[step.name] = result
        return result

    def _execute(self, step: Step, key: str, inputs: dict[str, Path], reason: str) -> StepResult:
        self.cache.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.cache.root))
        out = tmp / "out"
        out.mkdir()
        start = time.perf_counter()
        try:
            ctx = StepContext(out, inputs, {n: r.meta for n, r in self.results.items()}, self.progress)
            # Round-trip through sorted JSON so a fresh result is identical to a cached one.
            meta = json.loads(json.dumps(step.run(ctx), sort_keys=True, default=str))
            final = self.cache.store(key, out, meta, self.hasher)
        except PackagerError:
            raise
        except Exception as exc:
            raise StepError(
                step.name, f"{type(exc).__name__}: {exc}", "rerun with -v for the traceback"
            ) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return StepResult(step.name, key, final, meta, False, reason, time.perf_counter() - start)
