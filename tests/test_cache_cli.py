"""`packager cache`, `packager clean --older-than`, and where [build].cache, --cache and
PACKAGER_CACHE put the cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from packager.cache import Cache, Hasher, open_cache
from packager.cache_admin import parse_age
from packager.cli import main
from packager.config import load_config, with_cache
from packager.errors import ConfigError

DAY = 86400


def _entry(cache: Cache, key: str, size: int, days_unused: float = 0) -> None:
    out = cache.mkdtemp() / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(bytes(size))
    cache.store(key, out, {}, Hasher())
    stamp = time.time() - days_unused * DAY
    os.utime(cache.entry(key), (stamp, stamp))


def test_cache_command_shows_location_entries_size_and_last_use(
    tiny_project, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_project()
    cache = Cache(config.parent / ".packager-cache")
    _entry(cache, "a1" * 32, 1_500_000, days_unused=3)
    _entry(cache, "b2" * 32, 500_000)
    assert main(["cache", str(config)]) == 0
    out = capsys.readouterr().out
    assert str(cache.root) in out and "│ entries      │ 2" in out and "2.0 MB" in out
    assert "(3.0 days ago)" in out and "(0.0 hours ago)" in out


def test_clean_older_than_removes_only_entries_unused_for_that_long(
    tiny_project, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_project()
    cache = Cache(config.parent / ".packager-cache")
    _entry(cache, "a1" * 32, 1000, days_unused=8)
    _entry(cache, "b2" * 32, 1000, days_unused=6)
    assert main(["clean", str(config), "--older-than", "7d"]) == 0
    assert list(cache.stored_keys()) == ["b2" * 32]
    assert "removed 1 cache entries unused for 7d" in capsys.readouterr().out


def test_a_hit_counts_as_a_use(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    _entry(cache, "a1" * 32, 10, days_unused=30)
    assert cache.load("a1" * 32, Hasher()) == {}
    assert time.time() - cache.last_used("a1" * 32) < 60


@pytest.mark.parametrize(
    ("text", "seconds"), [("7d", 7 * DAY), ("12h", 43200), ("30m", 1800), ("1.5d", 1.5 * DAY)]
)
def test_ages_take_a_number_and_a_unit(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


def test_an_age_without_a_unit_exits_2(tiny_project, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clean", str(tiny_project()), "--older-than", "7"]) == 2
    assert "give a number and a unit s, m, h or d" in capsys.readouterr().err


def test_cache_verify_removes_corrupt_entries_and_exits_1(
    tiny_project, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_project()
    cache = Cache(config.parent / ".packager-cache")
    _entry(cache, "a1" * 32, 100)
    _entry(cache, "b2" * 32, 100)
    target = cache.entry("a1" * 32) / "out" / "model.onnx"
    st = target.stat()
    target.write_bytes(b"x" * 100)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # a load's stat check would not see it
    assert main(["cache", str(config), "--verify"]) == 1
    captured = capsys.readouterr()
    assert "verified 2 entries: 1 corrupt, removed" in captured.out and "a1a1a1a1a1a1" in captured.err
    assert list(cache.stored_keys()) == ["b2" * 32]
    assert main(["cache", str(config), "--verify"]) == 0  # sound again
    assert "verified 1 entry: all intact" in capsys.readouterr().out


def test_a_url_cache_keeps_a_local_working_cache_next_to_the_config(tiny_project) -> None:
    config = tiny_project()
    config.write_text(config.read_text().replace("[build]\n", '[build]\ncache = "s3://ml-cache/fleet"\n'))
    build = load_config(config).build
    assert build.shared_cache == "s3://ml-cache/fleet"
    assert build.working_cache == config.parent.resolve() / ".packager-cache"


def test_local_cache_beside_a_folder_cache_is_a_config_error(tiny_project) -> None:
    config = tiny_project()
    config.write_text(config.read_text().replace("[build]\n", '[build]\nlocal_cache = "/tmp/x"\n'))
    with pytest.raises(ConfigError, match="local_cache is only for a URL cache"):
        load_config(config)


def test_cache_location_does_not_change_the_config_hash(tiny_project, tmp_path: Path) -> None:
    config = load_config(tiny_project())
    moved = with_cache(config, "file:///mnt/ci-cache")
    assert moved.build.shared_cache == "file:///mnt/ci-cache"
    assert moved.build.working_cache == config.build.working_cache  # steps still run in the folder
    assert with_cache(config, str(tmp_path / "c")).build.working_cache == tmp_path / "c"
    assert moved.digest() == config.digest()


def test_packager_cache_variable_overrides_the_config(
    tiny_project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PACKAGER_CACHE", str(tmp_path / "elsewhere"))
    assert main(["cache", str(tiny_project())]) == 0
    assert str(tmp_path / "elsewhere") in capsys.readouterr().out


def test_a_url_whose_backend_is_unknown_is_a_config_error(tiny_project) -> None:
    config = with_cache(load_config(tiny_project()), "nosuchfs://bucket/x")
    with pytest.raises(ConfigError, match="cannot use 'nosuchfs://bucket/x'"):
        open_cache(config.build)
