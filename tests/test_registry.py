"""Every registered recipe is covered by a test module named after it."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from packager.errors import UnknownName
from packager.quantize import registry


@pytest.mark.parametrize("name", registry.names())
def test_every_variant_has_a_test_module(name: str) -> None:
    module = {"int8-dynamic": "dynamic", "int8-qdq": "static_qdq"}.get(name, name)
    assert (Path(__file__).parent / f"test_quantize_{module}.py").exists()


def test_unknown_variant_lists_valid_names() -> None:
    with pytest.raises(UnknownName, match="one of: fp16, int8-dynamic, int8-qdq, mixed"):
        registry.get("int4")


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("fp16", needs_calibration=False, summary="again")(lambda ctx: {})


@pytest.mark.parametrize("recipe", registry.BUILTIN, ids=lambda r: r.name)
def test_every_builtin_recipe_names_functions_that_exist(recipe: registry.Recipe) -> None:
    for entry in (recipe.run, recipe.analysis):
        if entry is not None:
            assert isinstance(entry, registry.Entry)
            assert callable(getattr(importlib.import_module(entry.module), entry.function))


def test_reading_the_recipes_imports_neither_config_nor_the_recipe_tools() -> None:
    # config validates variant names with the registry: the registry must not import config back.
    # The plan reads the table on every build: onnx (~50 ms) is imported only when a recipe runs.
    code = (
        "import sys, packager.quantize.registry as r; r.names(); [r.get(n).params for n in r.names()]; "
        "print(sorted({'packager.config', 'onnx', 'onnxruntime'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
