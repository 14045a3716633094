"""Task checks: loading the hook the config names, what each failure to find, import or run it says (the
config file and model, the line of the check's file, the fix), and the shipped top-k classifier check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from packager.build import BuildOptions
from packager.config import load_config
from packager.errors import ConfigError, StepError
from packager.pipeline import build_project
from packager.plan import make_plan
from packager.tasks import TaskContext, find_check, load_check
from packager.tasks.topk import check
from packager.validate.evaluate import TaskRun

CONTEXT = TaskContext(np.zeros((3, 1)), (32, 32), "NCHW")
FIELD = "packager.toml [models] 'face_detector'.task.check"
"""What the build passes as ``where``: the config file and model that declare the check."""


def test_topk_check_compares_shown_labels_and_top5_lists() -> None:
    ref = np.asarray([[9, 8, 7, 6, 5, 0], [0, 1, 2, 3, 4, 9], [5, 4, 3, 2, 1, 0]], np.float32)
    cand = ref.copy()
    cand[0] = [8, 9, 7, 6, 5, 0]  # shown label changes (class 1 wins), same top-5 set
    cand[2] = [0, 4, 3, 2, 1, 5]  # shown label changes to class 5, which pushes class 0 out of the top-5
    metrics = {m.name: m.value for m in check({"logits": ref}, {"logits": cand}, CONTEXT)}
    assert metrics["label_match"] == pytest.approx(1 / 3)
    assert metrics["top5_overlap"] == pytest.approx((1 + 1 + 4 / 5) / 3)


def test_a_check_in_a_project_file_is_loaded_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "my_check.py").write_text(
        "from packager.tasks import TaskMetric\n"
        "def check(reference, candidate, context):\n"
        "    return [TaskMetric('n', float(len(context.inputs)), True, 'inputs seen')]\n"
    )
    found = load_check("my_check.py:check", tmp_path)
    assert found({}, {}, CONTEXT)[0].value == 3.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("packager.tasks.topk", "must be `module:function`"),
        ("packager.tasks.nothing:check", "cannot import"),
        ("packager.tasks.topk:nothing", "has no function 'nothing'"),
        ("missing.py:check", "cannot import"),
    ],
)
@pytest.mark.parametrize("find", [load_check, find_check], ids=["load", "find"])
def test_a_check_that_cannot_be_found_is_a_config_error(
    tmp_path: Path, spec: str, message: str, find: Callable[[str, Path], object]
) -> None:
    with pytest.raises(ConfigError, match=message):
        find(spec, tmp_path)


def test_finding_a_check_at_plan_time_does_not_import_what_it_uses(tmp_path: Path) -> None:
    """The plan runs on every build, a no-op too: the check's own imports wait for its step."""
    (tmp_path / "heavy_check.py").write_text(
        "import module_that_is_not_installed\ndef check(reference, candidate, context):\n    return []\n"
    )
    find_check("heavy_check.py:check", tmp_path)
    with pytest.raises(ConfigError, match=r"cannot import 'heavy_check\.py'"):
        load_check("heavy_check.py:check", tmp_path)


@pytest.mark.parametrize(
    "source",
    ["check = lambda reference, candidate, context: []\n", "from packager.tasks.topk import check\n"],
    ids=["assigned", "imported"],
)
def test_a_check_bound_other_than_by_def_is_found(tmp_path: Path, source: str) -> None:
    (tmp_path / "other.py").write_text(source)
    find_check("other.py:check", tmp_path)
    assert callable(load_check("other.py:check", tmp_path))


@pytest.mark.parametrize("find", [load_check, find_check], ids=["load", "find"])
def test_a_syntax_error_in_the_check_names_the_field_and_the_line_to_fix(
    tmp_path: Path, find: Callable[..., object]
) -> None:
    (tmp_path / "broken.py").write_text(
        "import numpy\n\ndef check(reference, candidate, context)\n    return []\n"
    )
    with pytest.raises(ConfigError) as err:
        find("broken.py:check", tmp_path, FIELD)
    assert str(err.value) == (
        f"{FIELD}: cannot import 'broken.py': syntax error at broken.py:3 (expected ':'). "
        "Fix: fix the syntax error at broken.py:3"
    )
    assert err.value.exit_code == 2


def test_a_check_importing_a_module_not_installed_names_the_import_line(tmp_path: Path) -> None:
    (tmp_path / "needs.py").write_text(
        "import numpy\nimport nonexistent_helper_mod\n\n"
        "def check(reference, candidate, context):\n    return []\n"
    )
    with pytest.raises(ConfigError) as err:
        load_check("needs.py:check", tmp_path, FIELD)
    assert str(err.value) == (
        f"{FIELD}: cannot import 'needs.py': it imports 'nonexistent_helper_mod' at needs.py:2, which is "
        "not installed. Fix: install the module the check imports ('nonexistent_helper_mod'), or remove "
        "the import at needs.py:2"
    )


def test_a_check_whose_top_level_code_raises_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "table.py").write_text(
        "TABLE = {'a': 1}\nSCALE = TABLE['b']\n\ndef check(reference, candidate, context):\n    return []\n"
    )
    with pytest.raises(ConfigError) as err:
        load_check("table.py:check", tmp_path, FIELD)
    assert str(err.value) == (
        f"{FIELD}: cannot import 'table.py': its top-level code raised KeyError at table.py:2: 'b'. "
        "Fix: fix the check's module at table.py:2 so that it imports without error"
    )


@pytest.mark.parametrize("find", [load_check, find_check], ids=["load", "find"])
def test_a_module_spec_naming_a_file_beside_the_config_suggests_the_file_form(
    tmp_path: Path, find: Callable[..., object]
) -> None:
    (tmp_path / "yunet_check_beside.py").write_text(
        "def check(reference, candidate, context):\n    return []\n"
    )
    with pytest.raises(ConfigError) as err:
        find("yunet_check_beside:check", tmp_path, FIELD)
    assert str(err.value) == (
        f"{FIELD}: cannot import 'yunet_check_beside' (no module named 'yunet_check_beside'). "
        "Fix: write `yunet_check_beside.py:check` to load the file yunet_check_beside.py beside the config "
        "(`yunet_check_beside:check` names an installed module)"
    )


def test_a_module_spec_naming_nothing_beside_the_config_says_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        find_check("not_installed_pkg.checks:check", tmp_path, FIELD)
    assert str(err.value) == (
        f"{FIELD}: cannot import 'not_installed_pkg.checks' (no module named 'not_installed_pkg'). "
        "Fix: install the package that provides 'not_installed_pkg', or write `file.py:check` for a file "
        "beside the config"
    )


@pytest.mark.parametrize("find", [load_check, find_check], ids=["load", "find"])
def test_a_misspelt_function_suggests_the_closest_one_the_file_defines(
    tmp_path: Path, find: Callable[..., object]
) -> None:
    (tmp_path / "my_check.py").write_text("def check(reference, candidate, context):\n    return []\n")
    with pytest.raises(ConfigError) as err:
        find("my_check.py:chek", tmp_path, FIELD)
    assert str(err.value) == (
        f"{FIELD}: 'my_check.py' has no function 'chek'. Fix: write `my_check.py:check` (the closest name it "
        "defines), or define `def chek(reference, candidate, context)` in my_check.py"
    )


def test_a_check_that_raises_names_the_innermost_line_of_its_file_and_what_it_receives(
    tmp_path: Path,
) -> None:
    (tmp_path / "raises.py").write_text(
        "def _score(outputs):\n    return outputs['cls_99']\n\n\n"
        "def check(reference, candidate, context):\n    return [_score(reference)]\n"
    )
    run = TaskRun(load_check("raises.py:check", tmp_path, FIELD), CONTEXT, "raises.py:check", tmp_path, FIELD)
    outputs = {"cls_8": np.zeros((3, 1)), "obj_8": np.zeros((3, 1))}
    with pytest.raises(StepError) as err:
        run.run(outputs, outputs)
    assert str(err.value) == (
        f"step {FIELD} failed: 'raises.py:check' raised KeyError: 'cls_99' at raises.py:2. "
        "Fix: fix the check at raises.py:2; it receives `reference` and `candidate`, each a dict of the "
        "model's outputs by name (cls_8, obj_8) as float32 [N, ...], and `context`, a TaskContext "
        "(inputs, size, layout)"
    )
    assert err.value.exit_code == 1


def _with_check(config: Path, source: str) -> Path:
    """The tiny project's model with ``task.check = "my_check.py:check"``, the file holding ``source``."""
    text = config.read_text().replace("variants = ", 'task = { check = "my_check.py:check" }\nvariants = ', 1)
    config.write_text(text)
    (config.parent / "my_check.py").write_text(source)
    return config


def test_the_plan_names_the_config_file_and_model_of_a_broken_check(tiny_project) -> None:
    config = _with_check(
        tiny_project('["fp16"]'), "def check(reference, candidate, context)\n    return []\n"
    )
    with pytest.raises(ConfigError) as err:
        make_plan(load_config(config), BuildOptions())
    assert err.value.source == f"{config} [models] 'embedder'.task.check"
    assert str(err.value).endswith("Fix: fix the syntax error at my_check.py:1")


def test_the_validate_step_names_the_config_file_and_model_of_a_check_that_fails_to_import(
    tiny_project,
) -> None:
    config = _with_check(
        tiny_project('["fp16"]'),
        "import nonexistent_helper_mod\ndef check(reference, candidate, context):\n    return []\n",
    )
    with pytest.raises(ConfigError) as err:
        build_project(load_config(config), BuildOptions())
    assert err.value.source == f"{config} [models] 'embedder'.task.check"
    assert "it imports 'nonexistent_helper_mod' at my_check.py:1" in str(err.value)


def test_the_validate_step_names_the_config_file_and_model_of_a_check_that_raises(tiny_project) -> None:
    config = _with_check(
        tiny_project('["fp16"]'), "def check(reference, candidate, context):\n    return reference['nope']\n"
    )
    with pytest.raises(StepError) as err:
        build_project(load_config(config), BuildOptions())
    assert str(err.value).startswith(
        f"step {config} [models] 'embedder'.task.check failed: 'my_check.py:check' raised KeyError: 'nope' "
        "at my_check.py:2. Fix: fix the check at my_check.py:2; it receives"
    )
    assert "outputs by name (embedding)" in str(err.value)
