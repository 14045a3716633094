"""packager as a built wheel, not the checkout: the package list, the wheel's files, and a report rendered
by an installed copy (``packager.resources`` finding ``templates/`` through importlib.resources).

The wheel is built offline (``--no-build-isolation`` uses this venv's setuptools and wheel) from a copy of
the sources, because a build inside the checkout leaves ``build/`` and a rewritten ``*.egg-info`` there.
The installed copy runs under ``python -S``: its path holds the install and this venv's third-party
packages, but not the checkout and not the editable finder, so nothing can fall back to the repository.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import types
import zipfile
from pathlib import Path

import jinja2
import pytest

from packager.resources import (
    TEMPLATE_PACKAGE,
    TemplatesNotFound,
    TraversableLoader,
    _namespace_root,
    template_dir,
)
from packager.results import BuildResult, EvaluationFacts, IOInfo, ModelResult, VariantResult

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "templates"
PACKAGE_ROOTS = ("packager*", "device_bench*", "targets*")
"""Top-level folders whose Python ships (what ``packages.find`` included before the list was explicit)."""
PACKAGE_DATA = ("*.j2", "*.txt", "*.json")
"""``[tool.setuptools.package-data] "*"``: data files shipped beside any package's modules."""


def _setuptools() -> dict:
    with (REPO / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def _package_folder(package: str, root: Path = REPO) -> Path:
    top, _, rest = package.partition(".")
    folder = root / _setuptools().get("package-dir", {}).get(top, top)
    return folder.joinpath(*rest.split(".")) if rest else folder


def _files(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and any(p.match(pat) for pat in patterns))


def _template_files() -> list[str]:
    return sorted(p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob("*") if p.is_file())


def _minimal_result() -> BuildResult:
    reference = VariantResult(
        variant="fp32",
        file="models/m.onnx",
        sha256="0" * 64,
        size_bytes=1024,
        size_ratio=1.0,
        modes={},
        gate_mode="reference",
        gates=[],
        passed=True,
        details={},
    )
    model = ModelResult(
        name="m",
        source="m.onnx",
        source_sha256="1" * 64,
        opset=17,
        inputs=[IOInfo(name="x", dtype="float32", shape=[1, 3])],
        outputs=[IOInfo(name="y", dtype="float32", shape=[1, 2])],
        preprocessing={},
        evaluation=EvaluationFacts(
            images=1,
            from_images=1,
            from_pairs_only=0,
            pairs=0,
            positives=0,
            negatives=0,
            pairs_file=None,
            threshold=None,
        ),
        reference=reference,
        variants=[],
    )
    return BuildResult(
        project="wheel-check",
        version="1.0.0",
        config_sha256="2" * 64,
        gates_enforced=True,
        passed=True,
        tool_versions={},
        host={},
        models=[model],
        notes=["rendered by an installed wheel"],
    )


# --- the package list and the accessor (no build) -------------------------------------------------


def test_pyproject_lists_every_package() -> None:
    listed = set(_setuptools()["packages"])
    found = set()
    for top in REPO.iterdir():
        if not (top.is_dir() and any(fnmatch.fnmatch(top.name, pat) for pat in PACKAGE_ROOTS)):
            continue
        for folder in (top, *top.rglob("*")):
            if folder.is_dir() and "__pycache__" not in folder.parts and any(folder.glob("*.py")):
                found.add(".".join(folder.relative_to(REPO).parts))
    missing = sorted(found - listed)
    assert not missing, f"add {missing} to packages in pyproject.toml [tool.setuptools]: the wheel lacks them"
    stale = sorted(p for p in listed if not _package_folder(p).is_dir())
    assert not stale, f"remove {stale} from packages in pyproject.toml [tool.setuptools]: no such folder"
    assert TEMPLATE_PACKAGE in listed
    assert _package_folder(TEMPLATE_PACKAGE) == TEMPLATES


def test_template_dir_is_the_checkout_templates_folder_here() -> None:
    assert Path(str(template_dir("report"))).resolve() == TEMPLATES / "report"


def test_unknown_template_kind_names_the_ones_there() -> None:
    with pytest.raises(TemplatesNotFound, match=r"no 'no-such-kind' templates .*report.*Fix: reinstall"):
        template_dir("no-such-kind")


def test_editable_placeholder_in_namespace_path_is_skipped(tmp_path: Path) -> None:
    """setuptools' editable finder adds a non-folder entry that Python 3.11's importlib.resources refuses."""
    module = types.ModuleType(TEMPLATE_PACKAGE)
    module.__path__ = ["__editable__.packager-0.1.0.finder.__path_hook__", str(tmp_path)]
    assert _namespace_root(module) == tmp_path


def test_loader_lists_nested_templates_and_refuses_parent_paths(tmp_path: Path) -> None:
    (tmp_path / "kind" / "sub").mkdir(parents=True)
    (tmp_path / "kind" / "a.j2").write_text("{{ x }}", encoding="utf-8")
    (tmp_path / "kind" / "sub" / "b.kt.j2").write_text("b", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("no", encoding="utf-8")
    loader = TraversableLoader(tmp_path / "kind")
    env = jinja2.Environment(loader=loader)
    assert loader.list_templates() == ["a.j2", "sub/b.kt.j2"]
    assert env.get_template("a.j2").render(x=3) == "3"
    assert env.get_template("sub/b.kt.j2").render() == "b"
    for name in ("../secret.txt", "missing.j2"):
        with pytest.raises(jinja2.TemplateNotFound):
            env.get_template(name)


# --- a real wheel ---------------------------------------------------------------------------------


def _can_build_offline() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("setuptools", "wheel"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _can_build_offline():
        pytest.skip("building the wheel offline needs setuptools and wheel installed in this venv")
    with (REPO / "pyproject.toml").open("rb") as f:
        readme = tomllib.load(f)["project"]["readme"]
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", readme):
        shutil.copy2(REPO / name, src / name)
    for top in sorted({package.partition(".")[0] for package in _setuptools()["packages"]}):
        shutil.copytree(
            _package_folder(top),
            _package_folder(top, src),
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*command, "-w", str(out), str(src)], check=True, timeout=300, cwd=out)
    (built,) = out.glob("packager-*.whl")
    return built


def test_wheel_holds_every_module_template_and_package_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"{TEMPLATE_PACKAGE}/{name}" for name in _template_files()}
    assert "report/report.md.j2" in _template_files()
    for package in _setuptools()["packages"]:
        folder = _package_folder(package)
        inside = package.replace(".", "/")
        expected |= {f"{inside}/{p.name}" for p in _files(folder, ("*.py", *PACKAGE_DATA))}
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing}"
    assert not [n for n in names if n.startswith(("templates/", "tests/", "examples/"))]
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "packager = packager.cli:main" in scripts
    assert "device-bench = device_bench.cli:main" in scripts


INSTALLED_CHECK = """
import json, sys
from pathlib import Path

import packager, packager_templates
from packager.report import render_html, render_markdown
from packager.resources import template_dir, template_loader, templates_root
from packager.results import BuildResult

result = BuildResult.model_validate_json(Path(sys.argv[1]).read_text(encoding="utf-8"))
kinds = sorted(child.name for child in templates_root().iterdir() if child.is_dir())
loaded = []
for kind in kinds:
    loader = template_loader(kind)
    for name in loader.list_templates():
        loader.get_source(None, name)
        loaded.append(f"{kind}/{name}")
print(json.dumps({
    "packager": packager.__file__,
    "namespace_path": list(packager_templates.__path__),
    "report_dir": str(template_dir("report")),
    "loaded": loaded,
    "markdown": render_markdown(result),
    "html": render_html(result),
}))
"""


def test_installed_wheel_finds_its_templates_and_renders_a_report(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site)]
    subprocess.run([*pip, str(wheel)], check=True, timeout=120)
    result_json = tmp_path / "results.json"
    result_json.write_text(_minimal_result().model_dump_json(), encoding="utf-8")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    third_party = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *third_party]), "PYTHONNOUSERSITE": "1"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-S", *args]
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)

    done = run("-c", INSTALLED_CHECK, str(result_json))
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert Path(info["packager"]).is_relative_to(site)
    assert [Path(p).is_relative_to(site) for p in info["namespace_path"]] == [True]
    assert Path(info["report_dir"]) == site / TEMPLATE_PACKAGE / "report"
    assert sorted(info["loaded"]) == _template_files()
    assert info["markdown"].startswith("# Build report: wheel-check 1.0.0")
    assert "rendered by an installed wheel" in info["markdown"]
    assert "rendered by an installed wheel" in info["html"]
    for module in ("packager.cli", "device_bench.cli"):
        shown = run("-m", module, "--help")
        assert shown.returncode == 0, shown.stderr
        assert "usage:" in shown.stdout
