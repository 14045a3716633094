"""A source model's content: the ``.onnx`` file plus every external-data file it references.

ONNX stores large weights outside the protobuf (``model.onnx.data``, or one file per tensor) and
names them in each initializer's ``external_data`` ``location`` (onnx/docs/ExternalData.md). A model's
content is therefore all of those files: retraining that replaces only the ``.data`` file is a new
model, so every step that reads the model takes the data files as inputs and the manifest's source
checksum covers them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from packager.errors import ModelError
from packager.hashing import Hasher

_FIX_MISSING = (
    "copy the model's external data file(s) next to the .onnx file, or re-export with weights inside"
)


def _locations(model_path: Path) -> list[str]:
    """``location`` of every external tensor, in first-seen order, read without loading the weights."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except (DecodeError, OSError, ValueError):
        return []  # not a readable model: graph.load_model reports that with its own message
    tensors = list(onnx.external_data_helper._get_all_tensors(model))
    seen: list[str] = []
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if location and location not in seen:
            seen.append(location)
    return seen


def source_files(model_path: Path, memo: Hasher | None = None) -> list[Path]:
    """The model file first, then its external data files (sorted), all resolved.

    ``memo`` keeps the data files' names while the model file is unchanged: finding them parses the
    whole protobuf (SFace, 37 MB: 45 ms), and the plan asks on every build.

    Raises ``ModelError`` when the model or a data file it names is missing, naming the file.
    """
    if not model_path.is_file():
        raise ModelError(model_path, "model file not found", "check [models].source in packager.toml")
    base = model_path.parent
    names = memo.derived(model_path, "onnx-external-data", _locations) if memo else _locations(model_path)
    data = sorted({(base / loc).resolve() for loc in names})
    for path in data:
        if base.resolve() not in path.parents:
            raise ModelError(
                model_path,
                f"external data location {path} is outside the model's folder",
                "re-export with the data file next to the .onnx file",
            )
        if not path.is_file():
            raise ModelError(model_path, f"external data file {path.name} not found in {base}", _FIX_MISSING)
    return [model_path.resolve(), *data]


def source_inputs(model_path: Path, memo: Hasher | None = None) -> dict[str, Path]:
    """Step inputs for a step that reads the model: ``source`` plus ``source_data:<name>`` per data file."""
    files = source_files(model_path, memo)
    return {"source": files[0], **{f"source_data:{p.name}": p for p in files[1:]}}


def source_sha256(files: list[Path], file_sha256: Callable[[Path], str]) -> str:
    """The manifest's source checksum.

    With no external data, the sha256 of the ``.onnx`` file (what ``sha256sum model.onnx`` prints).
    With external data, the sha256 of the files' bytes concatenated in :func:`source_files` order,
    so ``cat model.onnx model.onnx.data | sha256sum`` reproduces it; any replaced data file changes it.
    """
    if len(files) == 1:
        return file_sha256(files[0])
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
