"""Write ``dist/<name>-<version>/`` atomically: a failed build never leaves a half bundle.

Everything is staged in a sibling temp folder and renamed into place; the previous bundle (if any)
is only removed once the new one is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from packager.assemble import BundleFile
from packager.errors import OutputError
from packager.results import BuildResult

MANIFEST_SCHEMA = 2


def bundle_name(result: BuildResult) -> str:
    return f"{result.project}-{result.version}"


def write_results(
    result: BuildResult, folder: Path, write_report: Callable[[BuildResult, Path], list[Path]]
) -> None:
    """results.json plus the reports rendered from it: what a bundle and a rejected build both carry."""
    (folder / "results.json").write_text(result.model_dump_json(indent=1) + "\n")
    write_report(result, folder)


def ensure_writable(out_root: Path) -> None:
    """Fail before any expensive work if the output folder cannot be written.

    Creates nothing: a build that fails later must not leave an empty ``dist/`` behind. When the
    folder does not exist yet, its nearest existing ancestor must be a writable folder.
    """
    probe = out_root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(
            out_root, f"output folder is not writable ({probe} is a file)", "pass --out to a writable folder"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(
            out_root, f"output folder is not writable ({exc.strerror})", "pass --out to a writable folder"
        ) from None


def manifest(result: BuildResult, files: list[BundleFile]) -> dict[str, object]:
    """Everything a release engineer or a device harness needs to trust and run the artifacts."""
    body: dict[str, object] = {
        "schema_version": MANIFEST_SCHEMA,
        "project": {"name": result.project, "version": result.version},
        "config_sha256": result.config_sha256,
        "gates_enforced": result.gates_enforced,
        "passed": result.passed,
        "tool_versions": result.tool_versions,
        "settings": result.settings,
        "models": [
            {
                "name": m.name,
                "source": m.source,
                "source_sha256": m.source_sha256,
                "source_files": m.source_files,
                "opset": m.opset,
                "primary_output": m.primary_output,
                "output_kinds": m.output_kinds,
                "preprocessing": m.preprocessing,
                "inputs": [io.model_dump() for io in m.inputs],
                "outputs": [io.model_dump() for io in m.outputs],
                "evaluation": m.evaluation,
                "variants": [
                    {
                        "variant": v.variant,
                        "file": v.file,
                        "sha256": v.sha256,
                        "size_bytes": v.size_bytes,
                        "size_ratio": round(v.size_ratio, 6),
                        "quantization": v.details,
                        "metrics": {
                            k: mode.model_dump(
                                exclude={"outputs": {"__all__": {"verification": {"roc_fpr", "roc_tpr"}}}}
                            )
                            for k, mode in v.modes.items()
                        },
                        "gate_mode": v.gate_mode,
                        "gates": [g.model_dump() for g in v.gates],
                        "passed": v.passed,
                    }
                    for v in [m.reference, *m.variants]
                ],
                "failed_variants": [f.model_dump() for f in m.failed],
            }
            for m in result.models
        ],
        "artifacts": [
            {
                "path": f.dest,
                "sha256": f.sha256,
                "size_bytes": f.size_bytes,
                "model": f.model,
                "variant": f.variant,
                "format": Path(f.dest).suffix.lstrip("."),
                "platform": "any",
                "inputs": [io.model_dump() for io in f.inputs],
                "outputs": [io.model_dump() for io in f.outputs],
            }
            for f in sorted(files, key=lambda f: f.dest)
        ],
    }
    content = json.dumps(body, sort_keys=True).encode()
    return {
        **body,
        "content_sha256": hashlib.sha256(content).hexdigest(),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_bundle(
    out_root: Path,
    result: BuildResult,
    files: list[BundleFile],
    write_report: Callable[[BuildResult, Path], list[Path]],
) -> Path:
    ensure_writable(out_root)
    created = [p for p in (out_root, *out_root.parents) if not p.exists()]
    final = out_root / bundle_name(result)
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            out_root, f"cannot create the output folder ({exc.strerror})", "pass --out"
        ) from None
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=out_root))
    staging.chmod(0o755)  # mkdtemp makes it private; a release bundle is meant to be read by others
    try:
        for f in files:
            dest = staging / f.dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f.source, dest)
        (staging / "manifest.json").write_text(
            json.dumps(manifest(result, files), indent=1, sort_keys=True) + "\n"
        )
        write_results(result, staging, write_report)
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}-old-", dir=out_root))
            os.replace(final, old / final.name)
        os.replace(staging, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        _discard(staging, created)
        raise OutputError(
            final, f"could not write the bundle ({exc})", "free disk space or pass --out"
        ) from exc
    except BaseException:
        _discard(staging, created)
        raise
    return final


def _discard(staging: Path, created: list[Path]) -> None:
    """Remove the staging folder and the output folders this build created (only if still empty)."""
    shutil.rmtree(staging, ignore_errors=True)
    for folder in created:  # innermost first
        try:
            folder.rmdir()
        except OSError:
            break
