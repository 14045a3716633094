"""The step cache under real faults: a full disk (a tiny tmpfs in a private mount namespace), a build
killed with SIGKILL in the middle of a step, and two `packager build` processes sharing one cache."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from packager.cache import Cache

PACKAGER = [sys.executable, "-m", "packager.cli"]


def _can_mount_tmpfs() -> str | None:
    """Why a private tmpfs cannot be mounted here, or None when it can."""
    if shutil.which("unshare") is None:
        return "no unshare(1) on this machine"
    if os.geteuid() != 0:
        return "mounting a tmpfs in a private mount namespace needs root"
    probe = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k tmpfs /mnt",
        ],
        capture_output=True,
        text=True,
    )
    return None if probe.returncode == 0 else f"cannot mount a tmpfs: {probe.stderr.strip()}"


needs_tmpfs = pytest.mark.skipif(_can_mount_tmpfs() is not None, reason=str(_can_mount_tmpfs()))


def _on_tmpfs(
    mountpoint: Path, size: str, argv: list[str], cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``argv`` with a tmpfs of ``size`` mounted at ``mountpoint``, visible to it alone."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    shell = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            shell,
            "sh",
            size,
            str(mountpoint),
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


FILL_AND_STORE = """
import json, os, sys
from pathlib import Path
from packager.cache import Cache, CacheFull, Hasher
root = Path(sys.argv[1])
cache = Cache(root)
out = cache.mkdtemp() / "out"
out.mkdir()
(out / "model.onnx").write_bytes(os.urandom(200_000))
fd = os.open(root / "filler", os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, bytes(4096))
except OSError:
    pass
os.close(fd)
try:
    cache.store("cd" * 32, out, {}, Hasher())
    error = None
except CacheFull as exc:
    error = str(exc)
staged = [p.name for p in (root / "tmp").iterdir() if "-stage-" in p.name or "-trash-" in p.name]
print(json.dumps({"error": error, "entries": list(cache.stored_keys()), "staged": staged}))
"""


@needs_tmpfs
def test_a_store_on_a_full_disk_names_the_cache_and_the_fix_and_leaves_no_entry(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    done = _on_tmpfs(root, "1m", [sys.executable, "-c", FILL_AND_STORE, str(root)])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["error"].startswith(f"{root}: no space left on the device holding the step cache")
    assert "[build].cache" in result["error"] and "free space" in result["error"]
    assert result["entries"] == [] and result["staged"] == []


BUILD_ON_FULL_DISK = """
import json, subprocess, sys
from pathlib import Path
from packager.cache import Cache
config, root = sys.argv[1], Path(sys.argv[2])
argv = [sys.executable, "-m", "packager.cli", "build", config]
build = subprocess.run(argv, capture_output=True, text=True)
cache = Cache(root)
bad = {key: cache.verify(key) for key in cache.stored_keys() if cache.verify(key) is not None}
left = sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp-"))
left += sorted(p.name for p in (root / "tmp").iterdir()) if (root / "tmp").exists() else []
print(json.dumps({"code": build.returncode, "stderr": build.stderr, "bad": bad, "left": left}))
"""


@needs_tmpfs
def test_a_build_that_fills_the_disk_fails_with_one_clear_line_and_no_half_entry(
    tiny_project_in, tmp_path: Path
) -> None:
    config = tiny_project_in(tmp_path, '["fp16"]')
    root = config.parent / ".packager-cache"
    done = _on_tmpfs(root, "400k", [sys.executable, "-c", BUILD_ON_FULL_DISK, str(config), str(root)])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["code"] == 1
    assert f"{root}: no space left on the device holding the step cache" in result["stderr"]
    assert "Traceback" not in result["stderr"]
    assert result["bad"] == {} and result["left"] == []
    assert not (config.parent / "dist").exists()


def _scratch_folders(root: Path) -> list[Path]:
    """Folders a running step writes into: the runner's scratch (``.tmp-*``) or ``tmp/*-step-*``."""
    found = [p for p in root.glob(".tmp-*") if p.is_dir()]
    return found + [p for p in root.glob("tmp/*-step-*") if p.is_dir()]


def _all_entries_verify(root: Path) -> dict[str, str]:
    cache = Cache(root)
    return {key: problem for key in cache.stored_keys() if (problem := cache.verify(key)) is not None}


def _verify_bundle(bundle: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*PACKAGER, "verify", str(bundle)], capture_output=True, text=True, timeout=120)


def test_a_build_killed_mid_step_leaves_cache_and_dist_whole_and_the_next_completes(
    tiny_project_in, tmp_path: Path
) -> None:
    config = tiny_project_in(tmp_path, '["fp16"]')
    root, bundle = config.parent / ".packager-cache", config.parent / "dist" / "tiny-0.1.0"
    first = subprocess.run([*PACKAGER, "build", str(config)], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    manifest = (bundle / "manifest.json").read_bytes()

    # Another variant: new steps run. Kill the build the moment one of them is writing its files.
    argv = [*PACKAGER, "build", str(config), "--variants", "int8-dynamic"]
    build = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not _scratch_folders(root) and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    build.send_signal(signal.SIGKILL)
    build.wait()
    assert build.returncode == -signal.SIGKILL, "the build finished before a step was seen running"
    assert _scratch_folders(root), "no step was running when the build was killed"
    assert _all_entries_verify(root) == {}
    assert (bundle / "manifest.json").read_bytes() == manifest  # the previous bundle, untouched
    assert _verify_bundle(bundle).returncode == 0

    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _scratch_folders(root) == [] and _all_entries_verify(root) == {}
    assert _verify_bundle(bundle).returncode == 0
    assert json.loads((bundle / "manifest.json").read_text())["settings"]["command_line"] == {
        "variants": ["int8-dynamic"]
    }


def _model_files(bundle: Path) -> dict[str, bytes]:
    return {
        p.relative_to(bundle).as_posix(): p.read_bytes()
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.suffix in (".onnx", ".ort", ".tflite", ".npy")
    }


def test_two_builds_sharing_one_cache_give_identical_whole_bundles(tiny_project_in, tmp_path: Path) -> None:
    config = tiny_project_in(tmp_path, '["fp16", "int8-dynamic"]')
    root = config.parent / ".packager-cache"
    outs = [tmp_path / "dist-a", tmp_path / "dist-b"]
    builds = [
        subprocess.Popen(
            [*PACKAGER, "build", str(config), "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in outs
    ]
    results = [b.communicate(timeout=300) for b in builds]
    assert [b.returncode for b in builds] == [0, 0], [err for _, err in results]
    bundles = [out / "tiny-0.1.0" for out in outs]
    assert all(_verify_bundle(b).returncode == 0 for b in bundles)
    manifests = [json.loads((b / "manifest.json").read_text()) for b in bundles]
    assert manifests[0]["artifacts"] == manifests[1]["artifacts"]
    assert _model_files(bundles[0]) == _model_files(bundles[1]) != {}
    assert _all_entries_verify(root) == {} and _scratch_folders(root) == []
