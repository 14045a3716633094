"""``packager verify``: does a bundle on disk still hold exactly what its manifest says?

Every artifact, generated source, platform archive and report the manifest lists is hashed again (a
folder such as an ``.mlpackage`` the way the build hashed it: the sorted listing of its files and their
sha256), the manifest's own ``content_sha256`` is recomputed, and every file the manifest does not
account for is reported. What a release pipeline runs after copying a bundle around, before publishing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packager.cache import Hasher
from packager.errors import DataError
from packager.hashing import sha256_file
from packager.manifest import load_manifest

UNLISTED_FILES = ("manifest.json",)
"""The one file a bundle cannot list: the manifest itself (its ``content_sha256`` covers it)."""


@dataclass(frozen=True)
class Verification:
    checked: int
    """Files and folders whose sha256 was recomputed."""
    problems: list[str]
    """``<path>: <what is wrong>``, sorted; empty when the bundle matches its manifest."""


def verify_bundle(bundle: Path) -> Verification:
    """Recompute every checksum of ``bundle`` (a folder with a manifest.json).

    Raises :class:`DataError` when there is no readable manifest of this packager's schema.
    """
    path = bundle / "manifest.json"
    if not path.is_file():
        raise DataError(bundle, "no manifest.json here", "pass a bundle folder, such as dist/faceid-1.4.0")
    manifest = load_manifest(path, DataError)
    problems = []
    if manifest.content_digest() != manifest.content_sha256:
        problems.append("manifest.json: content_sha256 does not match its content (the manifest was edited)")
    hasher = Hasher()
    accounted = {bundle / name for name in UNLISTED_FILES}
    listed = [(a.path, a.sha256) for a in manifest.artifacts]
    listed += [(f.path, f.sha256) for f in [*manifest.sources, *manifest.archives, *manifest.reports]]
    for rel, expected in listed:
        target = bundle / rel
        if not target.exists():
            problems.append(f"{rel}: missing")
            continue
        accounted |= set(target.rglob("*")) | {target} if target.is_dir() else {target}
        found = hasher.path(target)
        if found != expected:
            problems.append(f"{rel}: sha256 {found} but the manifest says {expected}")
    extra = [p for p in bundle.rglob("*") if p.is_file() and p not in accounted]
    problems += [f"{p.relative_to(bundle)}: not in the manifest" for p in extra]
    return Verification(checked=len(listed), problems=sorted(problems))


def check_results(bundle: Path) -> None:
    """Check that ``bundle``'s results.json is the one its manifest lists, before reports are rendered
    from it: an edited one would make them state numbers the build never measured. A rejected build's
    folder has no manifest, and its results.json is taken as it is.

    Raises:
        DataError: the manifest lists another sha256 for results.json, or cannot be read.
    """
    path = bundle / "manifest.json"
    if not path.is_file():
        return
    expected = {f.path: f.sha256 for f in load_manifest(path, DataError).reports}.get("results.json")
    results = bundle / "results.json"
    if expected is not None and sha256_file(results) != expected:
        raise DataError(
            results, "does not match the sha256 manifest.json lists for it (it was edited)",
            "restore the bundle's results.json (`packager verify` lists what changed), or rebuild",
        )  # fmt: skip
