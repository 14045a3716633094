"""The session config files both mobile targets write beside their generated loaders."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from packager.manifest import ManifestArtifact


def write_session_configs(artifacts: Iterable[tuple[str, ManifestArtifact]], folder: Path) -> list[Path]:
    """For each ``(path inside the app, .ort artifact)``, ``folder/<path with / as .>.session.json``: the
    artifact's recorded ``session_config`` (:class:`targets.ort_mobile.ep_config.EpConfig`) as sorted JSON,
    what the generated loader does, for teams that write their own. Returns the files written."""
    written = []
    for app_path, artifact in artifacts:
        config = folder / f"{app_path.replace('/', '.')}.session.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        session = artifact.validation.details["session_config"]
        config.write_text(json.dumps(session, indent=1, sort_keys=True) + "\n")
        written.append(config)
    return written
