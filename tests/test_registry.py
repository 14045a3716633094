"""Every registered recipe is covered by a test module named after it."""

from __future__ import annotations

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


def test_loading_every_recipe_does_not_import_the_config_module() -> None:
    # config validates variant names with the registry: the registry must not import config back.
    import subprocess
    import sys

    code = "import sys, packager.quantize.registry as r; r.names(); print('packager.config' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
