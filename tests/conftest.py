"""Shared fixtures: a tiny real project (model, images, pairs, config) built in code in a temp dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import model_factory

SIZE = 32
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "faceid"


@pytest.fixture(scope="session")
def faceid_example() -> Path:
    """The bundled example's packager.toml, with its model and data fetched and built (real photos)."""
    subprocess.run([sys.executable, str(EXAMPLE / "prepare_data.py")], check=True, timeout=900)
    return EXAMPLE / "packager.toml"


def write_identity_images(folder: Path, identities: int, views: int, seed: int) -> list[tuple[int, Path]]:
    """Smooth random 'faces': one base pattern per identity, views differ by noise and brightness."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for ident in range(identities):
        base = cv2.resize(rng.uniform(0, 255, (6, 6, 3)).astype(np.float32), (SIZE + 8, SIZE + 8))
        for view in range(views):
            img = base + rng.normal(0, 12, base.shape) + rng.uniform(-15, 15)
            img = cv2.resize(np.clip(img, 0, 255).astype(np.uint8), (SIZE + 8, SIZE + 8))
            path = folder / f"id{ident:02d}_{view:02d}.png"
            cv2.imwrite(str(path), img)
            written.append((ident, path))
    return written


def write_pairs(path: Path, images: list[tuple[int, Path]]) -> Path:
    lines = []
    for i, (id_a, a) in enumerate(images):
        for id_b, b in images[i + 1 :]:
            rel_a, rel_b = a.relative_to(path.parent), b.relative_to(path.parent)
            lines.append(f"{rel_a} {rel_b} {int(id_a == id_b)}")
    path.write_text("\n".join(lines) + "\n")
    return path


CONFIG_TEMPLATE = """\
[project]
name = "tiny"
version = "0.1.0"

[[models]]
name = "embedder"
source = "model.onnx"
input = {{ size = [{size}, {size}], channels = "RGB", mean = [127.5, 127.5, 127.5], layout = "NCHW" }}
output = {{ kind = "embedding", normalize = "l2" }}
calibration = {{ images = "calib", count = 16, min_count = 4, method = "minmax", probe_images = 8 }}
evaluation = {{ pairs = "eval/pairs.txt", threshold = 0.5 }}
variants = {variants}
gates = {{ min_mean_cosine = {min_cos}, max_auc_drop = 0.05, max_decision_flips = 0.2 }}
mixed = {{ target_mean_cosine = 0.999, max_float_share = 0.5 }}

[build]
latency_runs = 3
latency_warmup = 1
"""


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model + data, made once; each test copies what it needs into its own folder."""
    root = tmp_path_factory.mktemp("assets")
    model_factory.save(
        model_factory.mobilefacenet_like(size=SIZE, seed=1, batch="N", opset=11), root / "model.onnx"
    )
    eval_images = write_identity_images(root / "eval", identities=5, views=4, seed=2)
    write_pairs(root / "eval" / "pairs.txt", eval_images)
    write_identity_images(root / "calib", identities=8, views=2, seed=3)
    return root


@pytest.fixture(scope="session")
def tiny_project_in(tiny_assets: Path):  # -> factory
    """Like ``tiny_project`` in a folder the caller owns (for module-scoped builds): ``(folder, variants,
    extra config text) -> packager.toml``."""
    import shutil

    def make(folder: Path, variants: str, extra: str = "", min_cos: float = 0.9) -> Path:
        project = folder / "project"
        shutil.copytree(tiny_assets, project)
        config = project / "packager.toml"
        config.write_text(CONFIG_TEMPLATE.format(size=SIZE, variants=variants, min_cos=min_cos) + extra)
        return config

    return make


@pytest.fixture
def tiny_project(tiny_assets: Path, tmp_path: Path):  # -> factory
    """A fresh project folder per test; call it with overrides for the config text."""
    import shutil

    def make(variants: str = '["fp16", "int8-dynamic", "int8-qdq", "mixed"]', min_cos: float = 0.9) -> Path:
        project = tmp_path / "project"
        if not project.exists():
            shutil.copytree(tiny_assets, project)
        config = project / "packager.toml"
        config.write_text(CONFIG_TEMPLATE.format(size=SIZE, variants=variants, min_cos=min_cos))
        return config

    return make


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``forks`` run first: packager refuses forked step workers once TensorFlow is loaded
    in the process (``packager.scheduler.fork_hazard``), and later tests load it in this one."""
    items.sort(key=lambda item: item.get_closest_marker("forks") is None)
