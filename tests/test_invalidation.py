"""Exact invalidation, proven by counting the steps a rebuild runs: a change reruns the steps that
read what changed and nothing else (issue 11, part 2)."""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

import cv2
import pytest

from packager import steps
from packager.build import BuildOptions
from packager.config import load_config
from packager.pipeline import build_project, run_subset
from packager.plan import make_plan
from packager.scheduler import Observer, downstream

pytestmark = pytest.mark.forks  # builds with two forked workers, as the CLI does

TARGETS = '\n[android]\npackage = "com.example.tiny"\nmodule = "tiny"\ntflite_precisions = ["fp32"]\n'
TARGETS += '\n[ios]\nmodule = "Tiny"\n'


def _build(config: Path) -> set[str]:
    """Build with two workers; the names of the steps that ran (missed the cache)."""
    ran: set[str] = set()
    observer = Observer(started=lambda step: ran.add(step.name))
    build_project(load_config(config), BuildOptions(), observer=observer, jobs=2)
    return ran


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_project_in) -> Path:
    """The tiny project with both platform targets, built once with its cache next to it."""
    config = tiny_project_in(tmp_path_factory.mktemp("invalidation"), '["fp16", "int8-qdq"]', TARGETS)
    assert _build(config)
    return config.parent


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Path:
    """A copy of the built project and its cache, for one test to change."""
    shutil.copytree(built, tmp_path / "project", symlinks=True)
    return tmp_path / "project" / "packager.toml"


def test_an_unchanged_rebuild_runs_no_step(project: Path) -> None:
    assert _build(project) == set()


def test_editing_a_comment_or_the_layout_of_the_config_reruns_nothing(project: Path) -> None:
    text = project.read_text().replace("[ios]", "# the iOS app's package\n[ios]  ")
    project.write_text("# release config\n\n" + text)
    assert _build(project) == set()


def test_an_ios_setting_reruns_only_ios_steps(project: Path) -> None:
    project.write_text(project.read_text().replace('module = "Tiny"', 'module = "Tiny"\nauthor = "ACME"'))
    ran = _build(project)
    assert ran and all(name.startswith(("ios-", "validate[ios:")) for name in ran), ran


def test_new_calibration_images_rerun_int8_steps_and_their_users_not_fp16(project: Path) -> None:
    for image in (project.parent / "calib").rglob("*.png"):
        cv2.imwrite(str(image), 255 - cv2.imread(str(image)))
    ran = _build(project)
    assert {"calibration-data[embedder]", "calibrate[embedder]", "quantize[embedder:int8-qdq]"} <= ran
    assert "validate[embedder:int8-qdq]" in ran
    # FP16's range audit looks at the calibration images again (its own step, analyze[...]); it keeps
    # the same nodes in float, so the FP16 model is not converted, validated or shipped again.
    assert "analyze[embedder:fp16]" in ran
    assert not [n for n in ran - {"analyze[embedder:fp16]"} if "fp16" in n or "saved-model" in n], ran


def test_a_tool_version_change_reruns_the_steps_that_use_that_tool(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = metadata.version
    monkeypatch.setattr(
        steps.metadata, "version", lambda name: "9.1" if name == "coremltools" else real(name)
    )
    steps.tool_version.cache_clear()
    try:
        ran = _build(project)
    finally:
        steps.tool_version.cache_clear()
    plan = make_plan(load_config(project), BuildOptions()).steps
    users = {s.name for s in plan if "coremltools" in s.tools}
    affected = users | {d.name for user in users for d in downstream(plan, user)}
    assert users and users <= ran <= affected, (users, ran)


def test_a_step_s_code_is_the_modules_it_imports_not_its_whole_package() -> None:
    root = Path(steps.__file__).parents[1]
    ios = {p.relative_to(root).as_posix() for p in steps._import_closure("targets.ios.steps")}
    assert "targets/ios/steps.py" in ios and "targets/ort_mobile/step.py" in ios
    assert not [p for p in ios if p.startswith("targets/android/")], ios


def test_a_platform_subset_fills_the_cache_the_full_build_then_reuses(
    tmp_path: Path, tiny_project_in
) -> None:
    config = tiny_project_in(tmp_path, '["fp16"]', TARGETS)
    partial = run_subset(load_config(config), BuildOptions(), None, ["android"], jobs=2)
    assert partial.steps and not any(s.name.startswith(("ios-", "validate[ios:")) for s in partial.steps)
    assert not (config.parent / "dist").exists()  # a subset writes no bundle
    ran = _build(config)
    assert ran and all(name.startswith(("ios-", "validate[ios:")) for name in ran), ran
