"""A rebuild that would write the same bundle leaves the one in dist/ untouched (issue 11, part 2)."""

from __future__ import annotations

from pathlib import Path

from staging_helpers import killed_writers_staging

from packager.build import BuildOptions
from packager.config import load_config
from packager.pipeline import build_project
from packager.staging import make_staging


def _mtimes(bundle: Path) -> dict[str, int]:
    return {p.relative_to(bundle).as_posix(): p.stat().st_mtime_ns for p in bundle.rglob("*") if p.is_file()}


def test_an_unchanged_rebuild_does_not_rewrite_the_bundle(tiny_project) -> None:
    config = tiny_project(variants='["fp16"]')
    first = build_project(load_config(config), BuildOptions())
    before = _mtimes(first.bundle)
    again = build_project(load_config(config), BuildOptions())
    assert not again.rewritten and again.bundle == first.bundle
    assert _mtimes(again.bundle) == before


def test_a_file_touched_in_the_bundle_gets_it_rewritten(tiny_project) -> None:
    config = tiny_project(variants='["fp16"]')
    bundle = build_project(load_config(config), BuildOptions()).bundle
    (bundle / "report.md").write_text("edited by hand")
    again = build_project(load_config(config), BuildOptions())
    assert again.rewritten and (bundle / "report.md").read_text() != "edited by hand"


def test_a_deleted_bundle_is_written_again(tiny_project) -> None:
    import shutil

    config = tiny_project(variants='["fp16"]')
    bundle = build_project(load_config(config), BuildOptions()).bundle
    shutil.rmtree(bundle)
    assert (
        build_project(load_config(config), BuildOptions()).rewritten and (bundle / "manifest.json").is_file()
    )


def test_a_new_gate_bar_rewrites_the_bundle_without_rerunning_a_step(tiny_project) -> None:
    config = tiny_project(variants='["fp16"]', min_cos=0.9)
    build_project(load_config(config), BuildOptions())
    again = build_project(load_config(tiny_project(variants='["fp16"]', min_cos=0.91)), BuildOptions())
    assert again.rewritten and all(step.cached for step in again.steps)
    assert '"min_mean_cosine": 0.91' in (again.bundle / "manifest.json").read_text()


def test_staging_left_by_a_killed_build_is_removed_by_the_next(tiny_project) -> None:
    config = tiny_project(variants='["fp16"]')
    out = config.parent / "dist"
    out.mkdir()
    leftover = killed_writers_staging(out, "tiny-0.1.0")
    live = make_staging(out, "tiny-0.1.0")  # this process: alive
    build_project(load_config(config), BuildOptions())
    assert not leftover.exists() and live.exists()
