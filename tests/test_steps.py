"""The step cache: stable keys, hits skip work, misses say why, corrupt entries are rebuilt."""

from __future__ import annotations

from pathlib import Path

import pytest

import packager
from packager.cache import Cache
from packager.errors import StepError
from packager.steps import (
    Step,
    StepContext,
    StepOutput,
    StepRunner,
    packager_fingerprint,
    step_key,
    tree_fingerprint,
)


def test_step_key_is_pinned() -> None:
    # Changing the key recipe silently invalidates every user's cache: make it a deliberate act.
    key = step_key("quantize[m:fp16]", {"reference": "ab" * 32}, {"recipe": "fp16"}, {"onnx": "1.19.1"})
    assert key == "07bab3b1499ba32cc888bb96b459c6e799cd711966f251a013cbb4876e2f90bc"


def _counting_step(name: str, source: Path, calls: list[str], param: int = 1) -> Step:
    def run(ctx: StepContext) -> dict[str, object]:
        calls.append(name)
        (ctx.out / "out.txt").write_text(ctx.inputs["src"].read_text().upper())
        return {"param": param}

    return Step(name, "test", run=run, inputs={"src": source}, params={"param": param})


def test_second_run_is_a_cache_hit(tmp_path: Path) -> None:
    src = tmp_path / "src.txt"
    src.write_text("hello")
    calls: list[str] = []
    for _ in range(2):
        result = StepRunner(Cache(tmp_path / "cache")).run(_counting_step("s", src, calls))
    assert calls == ["s"]
    assert result.cached and (result.out / "out.txt").read_text() == "HELLO"


def test_changed_input_reruns_and_says_which(tmp_path: Path) -> None:
    src = tmp_path / "src.txt"
    src.write_text("hello")
    calls: list[str] = []
    StepRunner(Cache(tmp_path / "cache")).run(_counting_step("s", src, calls))
    src.write_text("bye")
    result = StepRunner(Cache(tmp_path / "cache")).run(_counting_step("s", src, calls))
    assert not result.cached and result.reason == "input changed: src"


def test_changed_parameter_reruns_and_says_which(tmp_path: Path) -> None:
    src = tmp_path / "src.txt"
    src.write_text("hello")
    calls: list[str] = []
    StepRunner(Cache(tmp_path / "cache")).run(_counting_step("s", src, calls, param=1))
    result = StepRunner(Cache(tmp_path / "cache")).run(_counting_step("s", src, calls, param=2))
    assert result.reason == "parameter changed: param"


def test_corrupt_entry_is_a_miss_not_a_crash(tmp_path: Path) -> None:
    src = tmp_path / "src.txt"
    src.write_text("hello")
    calls: list[str] = []
    first = StepRunner(Cache(tmp_path / "cache")).run(_counting_step("s", src, calls))
    (first.out / "out.txt").write_text("tampered")
    again = StepRunner(Cache(tmp_path / "cache")).run(_counting_step("s", src, calls))
    assert calls == ["s", "s"] and (again.out / "out.txt").read_text() == "HELLO"


def test_downstream_reads_upstream_output(tmp_path: Path) -> None:
    src = tmp_path / "src.txt"
    src.write_text("abc")
    calls: list[str] = []
    runner = StepRunner(Cache(tmp_path / "cache"))
    runner.run(_counting_step("up", src, calls))

    def down(ctx: StepContext) -> dict[str, object]:
        (ctx.out / "len.txt").write_text(str(len(ctx.inputs["text"].read_text())))
        return {}

    result = runner.run(Step("down", "test", run=down, inputs={"text": StepOutput("up", "out.txt")}))
    assert (result.out / "len.txt").read_text() == "3"


def test_failed_step_leaves_no_entry(tmp_path: Path) -> None:
    def boom(ctx: StepContext) -> dict[str, object]:
        (ctx.out / "half.bin").write_bytes(b"x")
        raise RuntimeError("tool crashed")

    runner = StepRunner(Cache(tmp_path / "cache"))
    with pytest.raises(StepError, match="step boom failed: RuntimeError: tool crashed"):
        runner.run(Step("boom", "test", run=boom))
    assert not list((tmp_path / "cache").rglob("half.bin"))


def test_packager_code_in_every_key_is_all_of_its_modules() -> None:
    """A recipe body is reached by name, not by an import the step's module makes: packager's own
    fingerprint must cover every module, or editing fp16.py would reuse FP16 steps of the old code."""
    root = Path(packager.__file__).resolve().parent
    assert packager_fingerprint() == tree_fingerprint(root)


def test_editing_any_nested_module_changes_the_tree_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "quantize").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    recipe = tmp_path / "pkg" / "quantize" / "fp16.py"
    recipe.write_text("LIMIT = 65504\n")
    before = tree_fingerprint(tmp_path / "pkg")
    recipe.write_text("LIMIT = 65000\n")
    assert tree_fingerprint(tmp_path / "pkg") != before
