"""Task checks: loading the hook the config names, and the shipped top-k classifier check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from packager.errors import ConfigError
from packager.tasks import TaskContext, find_check, load_check
from packager.tasks.topk import check

CONTEXT = TaskContext(np.zeros((3, 1)), (32, 32), "NCHW")


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


def test_a_check_file_with_a_syntax_error_is_a_config_error_at_plan_time(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def check(reference, candidate, context)\n    return []\n")
    with pytest.raises(ConfigError, match=r"cannot import 'broken\.py' \(expected ':'"):
        find_check("broken.py:check", tmp_path)
