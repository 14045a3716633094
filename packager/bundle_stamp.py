"""Know, without writing it, that the bundle a build would write is the one already in ``dist/``.

A no-op rebuild must not re-render the report, re-run the code generators and re-zip the platform
folders (seconds, and a new mtime on every file a release pipeline watches). The stamp is a sha256
of everything the bundle is made from: the measured results, the files it copies (cache entries,
named by their content-addressed paths), the effective config, the command-line options and the
code that writes it (packager, the platform targets, the templates). The cache keeps the stamp of
each bundle it wrote with the size and mtime of every file in it; a bundle is unchanged when the
stamps match and no file in it was added, removed or touched since.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packager.assemble import BundleFile
from packager.config import Config
from packager.results import BuildResult
from packager.steps import packager_fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundleStamp:
    folder: Path
    """The bundle folder (``dist/<name>-<version>``)."""
    digest: str
    record: Path
    """Where the cache keeps this folder's stamp and file listing."""

    def unchanged(self) -> bool:
        """True when this exact bundle is on disk, untouched since packager wrote it."""
        try:
            saved = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return False
        return saved.get("stamp") == self.digest and saved.get("files") == _listing(self.folder)

    def save(self) -> None:
        """Record the bundle just written (a lost race only costs the next build a rewrite)."""
        try:
            self.record.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.record.with_name(f".{self.record.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"stamp": self.digest, "files": _listing(self.folder)}))
            os.replace(tmp, self.record)
        except OSError as exc:
            log.debug("could not record the stamp of %s: %s", self.folder, exc)


def bundle_stamp(
    config: Config, given: dict[str, object], result: BuildResult, files: list[BundleFile], folder: Path
) -> BundleStamp:
    payload = {
        "result": result.model_dump(mode="json"),
        "files": sorted((f.dest, str(f.source.resolve())) for f in files),
        "config": config.digest(),
        "given": given,
        "code": [
            packager_fingerprint(),
            _tree_fingerprint("targets"),
            _tree_fingerprint("packager_templates"),
        ],
        "jinja2": metadata.version("jinja2"),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    name = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return BundleStamp(folder, digest, config.build.working_cache / "bundles" / f"{name}.json")


@functools.cache
def _tree_fingerprint(package: str) -> str:
    """sha256 of every file of an installed package (code generators and their templates)."""
    digest = hashlib.sha256()
    spec = importlib.util.find_spec(package)
    # The first real folder: an editable install adds a placeholder entry to a namespace package's
    # path (see packager.resources._namespace_root).
    folders = [Path(p) for p in (spec.submodule_search_locations or []) if Path(p).is_dir()] if spec else []
    if not folders:
        raise ValueError(f"package {package!r} has no folder on disk")
    root = folders[0]
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _listing(folder: Path) -> list[list[object]]:
    """(path, size, mtime_ns) of every file under ``folder``; [] when it does not exist."""
    found: list[list[object]] = []
    for top, _, names in os.walk(folder):
        for name in names:
            path = Path(top) / name
            st = path.stat()
            found.append([path.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns])
    return sorted(found)
