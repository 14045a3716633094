"""packager/staging.py: staging folders of killed writers are removed, others' are kept."""

from __future__ import annotations

from pathlib import Path

from staging_helpers import killed_writers_staging

from packager.staging import make_staging, reap_dead_staging


def test_a_killed_writers_staging_folder_is_removed(tmp_path: Path) -> None:
    leftover = killed_writers_staging(tmp_path, "tiny-0.1.0")
    assert leftover.is_dir() and leftover.parent == tmp_path
    assert reap_dead_staging(tmp_path, "tiny-0.1.0") == [leftover]
    assert not leftover.exists()


def test_a_live_writers_staging_folder_is_kept(tmp_path: Path) -> None:
    live = make_staging(tmp_path, "tiny-0.1.0")  # this process's
    assert reap_dead_staging(tmp_path, "tiny-0.1.0") == [] and live.is_dir()


def test_another_hosts_staging_folder_is_kept_whatever_its_pid(tmp_path: Path) -> None:
    # On a shared filesystem a pid from another machine says nothing about a process there.
    other = tmp_path / ".tiny-0.1.0.staging-build-host-7-999999999-abc123"
    other.mkdir()
    assert reap_dead_staging(tmp_path, "tiny-0.1.0") == [] and other.is_dir()


def test_another_names_staging_folder_is_kept(tmp_path: Path) -> None:
    other = killed_writers_staging(tmp_path, "tiny-0.1.0-rc")
    assert reap_dead_staging(tmp_path, "tiny-0.1.0") == [] and other.is_dir()


def test_a_staging_folder_is_readable_by_others(tmp_path: Path) -> None:
    assert make_staging(tmp_path, "x").stat().st_mode & 0o777 == 0o755
