"""Where a release came from: the provenance statement ``packager publish`` writes beside the files.

An in-toto Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md) whose
predicate is SLSA Provenance v1 (https://slsa.dev/spec/v1.0/provenance):

* ``subject``: every published file but the statement itself and SHA256SUMS, with its sha256;
* ``predicate.buildDefinition``: ``externalParameters`` = the config as built (the manifest's effective
  settings) and its sha256, plus what the command lines chose; ``internalParameters`` = what packager
  decided itself (manifest schema, whether gates were enforced and passed, build time);
  ``resolvedDependencies`` = each model's source files with their sha256, the git commit of the repository
  holding the config (with a ``dirty`` flag) when there is one, and every tool that made a published file
  (PyPI distributions as package URLs, ``pkg:pypi/onnx@1.19.1``; others, such as kotlinc, by name);
* ``predicate.runDetails``: ``builder.id``, the packager versions that built and published, and the
  publish's start and end times.

The statement is not signed: a release pipeline that needs SLSA Build L2+ wraps it in a DSSE envelope with
its own key (e.g. ``cosign attest-blob --predicate``); the digests in it are checked by ``sha256sum -c
SHA256SUMS`` beside it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from packager.config import load_config
from packager.errors import DataError, PackagerError
from packager.manifest import Manifest

log = logging.getLogger(__name__)

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:packager:buildtype:bundle:v1"
"""What ``externalParameters`` and ``internalParameters`` mean (SLSA: a TypeURI, RFC 3986). packager has no
public home page to host a build-type document yet, so a URN names this tool and the parameters' version;
bump ``v1`` when their meaning changes."""
BUILDER_ID = "urn:packager:builder:packager-publish"
"""SLSA ``builder.id``: the platform that ran the build. Here the packager CLI on whatever host ran it; a
CI system that wants its own identity (and signs the statement) should rewrite it."""
GIT_TIMEOUT_S = 30


@dataclass(frozen=True)
class GitSource:
    """The git state of the repository holding the config, read at publish time."""

    commit: str
    dirty: bool
    """Tracked files differ from ``commit`` (untracked files, such as ``dist/``, do not count)."""
    config: str
    """The config's path inside the repository, ``/``-separated."""
    remote: str | None
    """``remote.origin.url`` without any user name or password in it; None when there is none."""


def _git(folder: Path, *args: str) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    done = subprocess.run(
        [git, "-C", str(folder), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


def _without_credentials(url: str) -> str:
    """A remote URL safe to publish: ``https://user:token@host/repo`` -> ``https://host/repo``."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url  # scp-like ``git@host:repo`` names a user, never a secret
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host))


def git_source(config: Path) -> GitSource | None:
    """The commit of the git work tree holding ``config``; None when git is missing, the folder is in no
    work tree, or the repository has no commit yet (each logged)."""
    folder = config.resolve().parent
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top is None:
        log.info(
            "%s is not in a git work tree (or git is not installed): no commit in the provenance", config
        )
        return None
    commit = _git(folder, "rev-parse", "--verify", "HEAD")
    if commit is None:
        log.warning("the git repository at %s has no commit yet: no commit in the provenance", top)
        return None
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    remote = _git(folder, "config", "--get", "remote.origin.url")
    return GitSource(
        commit=commit,
        dirty=bool(status),
        config=config.resolve().relative_to(Path(top).resolve()).as_posix(),
        remote=_without_credentials(remote) if remote else None,
    )


def find_config(bundle: Path, manifest: Manifest, given: Path | None) -> Path | None:
    """The packager.toml the bundle was built from: ``given`` (which must match the manifest's
    ``config_sha256``), else the first ``packager.toml`` in the bundle's parent folders that matches.

    Raises:
        DataError: ``given`` does not load, or describes another build than the manifest's.
    """
    if given is not None:
        try:
            digest = load_config(given).digest()
        except PackagerError as exc:
            raise DataError(
                given, f"cannot read the config ({exc})", "pass the bundle's packager.toml"
            ) from None
        if digest != manifest.config_sha256:
            raise DataError(
                given,
                f"its settings hash to {digest[:12]}…, the bundle's config to {manifest.config_sha256[:12]}…",
                "pass the packager.toml the bundle was built from, or rebuild the bundle from this one",
            )
        return given
    for folder in bundle.resolve().parents:
        candidate = folder / "packager.toml"
        if not candidate.is_file():
            continue
        try:
            if load_config(candidate).digest() == manifest.config_sha256:
                return candidate
        except PackagerError as exc:
            log.debug("%s does not load (%s): not the bundle's config", candidate, exc)
        log.debug("%s is not the config %s was built from", candidate, bundle)
    log.warning(
        "no packager.toml matching the bundle's config_sha256 in the folders above %s: "
        "the provenance names no git commit (pass --config)",
        bundle,
    )
    return None


def _timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as protobuf's Timestamp JSON form (the statement's wire format) wants."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _distribution(name: str, version: str) -> dict[str, object]:
    """A Python distribution the build ran, as a package URL (https://github.com/package-url/purl-spec)."""
    if version == "not installed":
        return {"name": name, "annotations": {"version": version}}
    return {"name": name, "uri": f"pkg:pypi/{name}@{version}"}


def _model_sources(manifest: Manifest) -> list[dict[str, object]]:
    """Each model's source files by their path relative to the config, with the file's sha256."""
    config = manifest.settings.get("config")
    sources: dict[str, str] = {}
    if isinstance(config, dict):
        for entry in config.get("models", []):
            if isinstance(entry, dict) and isinstance(entry.get("source"), str):
                sources[entry["name"]] = entry["source"]
    found = []
    for model in manifest.models:
        folder = Path(sources.get(model.name, model.source)).parent
        for name, digest in sorted(model.source_files.items()):
            found.append(
                {
                    "name": (folder / name).as_posix(),
                    "digest": {"sha256": digest},
                    "annotations": {"model": model.name, "model_content_sha256": model.source_sha256},
                }
            )
    return found


def statement(
    manifest: Manifest,
    subjects: dict[str, str],
    *,
    source: GitSource | None,
    publish_tools: dict[str, str],
    publish_parameters: dict[str, object],
    publisher_version: str,
    started: datetime,
    finished: datetime,
) -> dict[str, object]:
    """The provenance statement as JSON data.

    ``subjects``: published path -> sha256. ``publish_tools``: tools the publish itself ran (name ->
    version), beside the manifest's build tools. ``publish_parameters``: the publish command's own choices.
    """
    dependencies = _model_sources(manifest)
    if source is not None:
        repository: dict[str, object] = {
            "name": source.config,
            "digest": {"gitCommit": source.commit},
            "annotations": {"dirty": source.dirty},
        }
        if source.remote:
            remote = source.remote
            # A local path is no URI: SPDX/pip style `git+file:///path`.
            if "://" not in remote and not remote.startswith("git@") and Path(remote).is_absolute():
                remote = Path(remote).as_uri()
            repository["uri"] = f"git+{remote}"
        dependencies.append(repository)
    build_tools = sorted((k, v) for k, v in manifest.tool_versions.items() if k != "packager")
    dependencies += [_distribution(name, version) for name, version in build_tools]
    # A target's publish tools (a compiler found on PATH) come from anywhere: named, not a package URL.
    dependencies += [
        {"name": name, "annotations": {"version": version, "used_by": "packager publish"}}
        for name, version in sorted(publish_tools.items())
    ]
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": path, "digest": {"sha256": digest}} for path, digest in sorted(subjects.items())
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "project": {"name": manifest.project.name, "version": manifest.project.version},
                    "config": manifest.settings.get("config", {}),
                    "config_sha256": manifest.config_sha256,
                    "build_command_line": manifest.settings.get("command_line", {}),
                    "publish": publish_parameters,
                },
                "internalParameters": {
                    "manifest_schema_version": manifest.schema_version,
                    "manifest_content_sha256": manifest.content_sha256,
                    "gates_enforced": manifest.gates_enforced,
                    "gates_passed": manifest.passed,
                    "built_at": manifest.built_at,
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": {
                        "packager (build)": manifest.tool_versions.get("packager", "unknown"),
                        "packager (publish)": publisher_version,
                    },
                },
                "metadata": {
                    "invocationId": f"urn:uuid:{uuid.uuid4()}",
                    "startedOn": _timestamp(started),
                    "finishedOn": _timestamp(finished),
                },
            },
        },
    }
