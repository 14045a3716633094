"""``packager publish``: a verified bundle as a versioned release, ``<DEST>/<name>/<version>/``.

The release holds (paths relative to the version folder)::

    <platform>.zip          each platform archive of the bundle, byte for byte
    manifest.json           the bundle's manifest, byte for byte
    <platform>/...          each target's release files (its ``publish`` hook, packager.target.Target)
    provenance.intoto.json  in-toto Statement v1 with a SLSA Provenance v1 predicate (packager.provenance)
    SHA256SUMS              every file above, ``<sha256>  <path>`` lines, the format ``sha256sum -c`` checks

DEST is a folder or an fsspec URL (``s3://bucket/releases``, ``memory://...``; the protocol's fsspec
implementation, such as s3fs, must be installed). A bundle is published only if it verifies against its
manifest (:func:`packager.verify.verify_bundle`) and its gates passed (unless ``allow_failed_gates``), and
never over an existing version unless ``force``.

How a half-written version is kept from looking complete (a rename into place in a folder;
SHA256SUMS uploaded last, as the completion marker, on an object store): :mod:`packager.release_store`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from packager.errors import ConfigError, DataError
from packager.manifest import Manifest, load_manifest
from packager.provenance import GitSource, find_config, git_source, statement
from packager.release_store import Destination, ReleaseFile, place
from packager.steps import tool_version
from packager.target import PublishContext, installed_targets
from packager.verify import verify_bundle

log = logging.getLogger(__name__)

SUMS = "SHA256SUMS"
PROVENANCE = "provenance.intoto.json"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class PublishOptions:
    force: bool = False
    """Replace an existing (or half-published) version."""
    allow_failed_gates: bool = False
    """Publish a bundle whose manifest says its gates failed (built with ``--no-gates``)."""
    config: Path | None = None
    """The packager.toml the bundle was built from (default: searched above the bundle); its git commit
    goes into the provenance."""
    target_options: Mapping[str, Mapping[str, str | bool]] = field(default_factory=dict)
    """Each target's own publish options, by target name then flag (``{"android": {"no-maven": True}}``)."""


@dataclass(frozen=True)
class Publication:
    location: str
    """The version folder: a local path or ``<protocol>://...``."""
    files: list[ReleaseFile]
    """Every published file, sorted by path (SHA256SUMS included)."""
    replaced: bool
    """An existing version was replaced (``force``)."""
    atomic: bool
    """Renamed into place (a local folder); else uploaded with SHA256SUMS last."""
    config: Path | None
    """The bundle's packager.toml, when found."""
    source: GitSource | None
    """The git state of the repository holding ``config``, when it is in one."""
    seconds: float


def checked_bundle(bundle: Path, allow_failed_gates: bool) -> Manifest:
    """The bundle's manifest, once the bundle verified against it and its gates passed.

    Raises:
        DataError: no manifest, a file that does not match it, a bundle with no platform archive, or
            failed gates without ``allow_failed_gates``.
    """
    verification = verify_bundle(bundle)
    if verification.problems:
        count = len(verification.problems)
        raise DataError(
            bundle,
            f"does not match its manifest.json ({count} problem(s); first: {verification.problems[0]})",
            f"run `packager verify {bundle}` for the list, then re-copy the bundle, or "
            "`packager clean --dist` and build again",
        )
    manifest = load_manifest(bundle / MANIFEST, DataError)
    if not manifest.passed and not allow_failed_gates:
        raise DataError(
            bundle / MANIFEST,
            "the bundle's release gates did not pass (it was built with --no-gates)",
            "fix the failing gates and rebuild, or pass --allow-failed-gates to publish it anyway "
            "(the provenance records gates_passed=false)",
        )
    if not manifest.archives:
        raise DataError(
            bundle / MANIFEST,
            "the bundle has no platform archive to publish (no platform table was configured)",
            "add a platform table to packager.toml and rebuild",
        )
    return manifest


def _platforms(manifest: Manifest) -> list[str]:
    named = {a.platform for a in manifest.artifacts} | {s.platform for s in manifest.sources}
    return sorted((named | {a.platform for a in manifest.archives}) - {"any"})


def _run_hooks(bundle: Path, manifest: Manifest, out: Path, options: PublishOptions) -> dict[str, str]:
    """Each platform target's release files into ``out/<platform>/``; the tools they ran (name -> version).

    Raises:
        DataError: a platform of the bundle has no installed target, or its table is not in the manifest.
        ValueError: a hook wrote outside ``out/<platform>/`` or misreported what it wrote (a target bug).
    """
    targets = installed_targets()
    settings = manifest.settings.get("config")
    tables = settings.get("targets", {}) if isinstance(settings, dict) else {}
    tools: dict[str, str] = {}
    for platform in _platforms(manifest):
        target = targets.get(platform)
        if target is None:
            raise DataError(
                bundle, f"has {platform} files but no {platform!r} target is installed",
                f"install the package that registers the {platform!r} target, then publish again",
            )  # fmt: skip
        if target.publish is None:
            continue
        if platform not in tables:
            raise DataError(
                bundle / MANIFEST, f"settings.config.targets has no {platform!r} table", "rebuild"
            )
        context = PublishContext(
            manifest=manifest,
            table=target.schema.model_validate(tables[platform]),
            bundle=bundle,
            out=out,
            options=options.target_options.get(platform, {}),
        )
        made = target.publish(context)
        folder = (out / platform).resolve()
        returned = {path.resolve() for path in made.files}
        written = {p for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()
        if returned != written:
            stray = sorted(str(p) for p in returned ^ written)
            raise ValueError(f"target {platform} publish: files outside {platform}/ or not reported: {stray}")
        tools |= made.tools
    return tools


def _describe(out: Path) -> list[ReleaseFile]:
    files = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        if "\n" in rel or "\\" in rel:
            # sha256sum escapes such names with a leading backslash; no packager path has them.
            raise ValueError(f"{rel!r}: a release path with a newline or backslash")
        data = path.read_bytes()
        files.append(ReleaseFile(rel, hashlib.sha256(data).hexdigest(), len(data)))
    return files


def sums_text(files: list[ReleaseFile]) -> str:
    """SHA256SUMS: ``<sha256>  <path>`` per file, sorted, as GNU ``sha256sum`` writes and ``-c`` reads
    (two spaces: text mode, which is binary on POSIX)."""
    return "".join(f"{f.sha256}  {f.path}\n" for f in sorted(files, key=lambda f: f.path))


def _stage(
    bundle: Path, manifest: Manifest, out: Path, options: PublishOptions, source: GitSource | None
) -> list[ReleaseFile]:
    """Write the whole release into the local folder ``out``; returns every file, SHA256SUMS last."""
    started = datetime.now(UTC)
    for archive in manifest.archives:
        shutil.copyfile(bundle / archive.path, out / archive.path)
    shutil.copyfile(bundle / MANIFEST, out / MANIFEST)
    tools = _run_hooks(bundle, manifest, out, options)
    subjects = _describe(out)
    copied = {f.path: f.sha256 for f in subjects}
    for archive in manifest.archives:  # the bundle verified a moment ago: this catches a change since
        if copied[archive.path] != archive.sha256:
            raise DataError(bundle / archive.path, "changed while being published", "publish again")
    switches = {
        target: sorted(flag for flag, value in given.items() if value is True)
        for target, given in sorted(options.target_options.items())
    }
    parameters: dict[str, object] = {
        "allow_failed_gates": options.allow_failed_gates,
        "force": options.force,
        "target_switches": {k: v for k, v in switches.items() if v},
    }
    document = statement(
        manifest,
        {f.path: f.sha256 for f in subjects},
        source=source,
        publish_tools=tools,
        publish_parameters=parameters,
        publisher_version=tool_version("packager"),
        started=started,
        finished=datetime.now(UTC),
    )
    (out / PROVENANCE).write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    files = _describe(out)
    (out / SUMS).write_text(sums_text(files))
    sums = (out / SUMS).read_bytes()
    return [*files, ReleaseFile(SUMS, hashlib.sha256(sums).hexdigest(), len(sums))]


def publish_bundle(bundle: Path, dest: str, options: PublishOptions | None = None) -> Publication:
    """Publish ``bundle`` (a ``dist/<name>-<version>`` folder) to ``dest`` as ``<name>/<version>/``.

    Raises:
        DataError: the bundle does not verify, its gates failed, or ``options.config`` is not its config.
        ConfigError: ``dest`` is an fsspec URL whose protocol is unknown or not installed, or
            ``target_options`` names a target that is not installed.
        OutputError: the version exists (or is half-published) and ``force`` is not set, or it cannot be
            written.
        PackagerError: a target's publish hook failed (e.g. kotlinc missing for the Android Maven repo).
    """
    options = options or PublishOptions()
    clock = time.perf_counter()
    unknown = sorted(set(options.target_options) - set(installed_targets()))
    if unknown:
        raise ConfigError("packager publish", [f"options for targets not installed: {', '.join(unknown)}"])
    manifest = checked_bundle(bundle, options.allow_failed_gates)
    destination = Destination.open(dest)
    name, version = manifest.project.name, manifest.project.version
    config = find_config(bundle, manifest, options.config)
    source = git_source(config) if config is not None else None
    location = destination.display(name, version)

    def stage(out: Path) -> list[ReleaseFile]:
        return _stage(bundle, manifest, out, options, source)

    files, replaced = place(
        destination, (name, version), stage, force=options.force, marker=SUMS, label=f"{name} {version}"
    )
    seconds = time.perf_counter() - clock
    log.info("published %s %s to %s: %d files in %.1f s", name, version, location, len(files), seconds)
    files = sorted(files, key=lambda f: f.path)
    return Publication(location, files, replaced, destination.fs is None, config, source, seconds)
