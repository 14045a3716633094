"""Calibration images and evaluation pairs: discovery, parsing, and clear errors pointing at lines."""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from packager.config import CalibrationSpec, EvaluationSpec, InputSpec
from packager.errors import DataError
from packager.hashing import Hasher
from packager.preprocess import IMAGE_SUFFIXES, read_image, to_tensor
from packager.results import EvaluationCounts

log = logging.getLogger(__name__)


def image_sources(src: Path, what: str = "calibration", field: str = "calibration.images") -> list[Path]:
    """The files of an image source, in a stable order: a folder's images sorted by name, a list
    file's paths in its order, or the single ``.npy`` of preprocessed tensors.

    ``what`` and ``field`` name the source in errors ("calibration", "calibration.images").
    """
    if not src.exists():
        raise DataError(src, f"{what} data not found", f"fix [models].{field}")
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(
                src, f"{what} folder holds no images (.png/.jpg/...)", "add images or fix the path"
            )
        return files
    if src.suffix == ".npy":
        return [src]
    return _list_file(src, what)


def calibration_sources(spec: CalibrationSpec) -> list[Path]:
    """The candidate calibration files, in a stable order (folder, list file, or a single .npy)."""
    return image_sources(spec.images)


def _list_file(src: Path, what: str = "calibration") -> list[Path]:
    """Image paths of a list file (one per line, relative to the file, optionally quoted).

    Raises:
        DataError: the file lists nothing, or lists images that do not exist (all of them, by line).
    """
    files: list[Path] = []
    problems: list[tuple[int, str]] = []
    for lineno, raw in enumerate(_read_lines(src), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        rel = _unquote(line)
        path = (src.parent / rel).resolve()
        if not path.is_file():
            problems.append((lineno, f"image {rel!r} does not exist ({path})"))
        files.append(path)
    if problems:
        raise _bad_lines(src, problems, MISSING_FIX)
    if not files:
        raise DataError(src, f"{what} list file is empty", "list one image path per line")
    return files


def load_calibration(
    spec: CalibrationSpec, input_spec: InputSpec, shape: list[int]
) -> tuple[np.ndarray, list[str]]:
    """Preprocessed calibration tensors [N, ...] plus warnings about skipped files.

    Unreadable images are skipped (one bad file in 200 should not stop a release), but fewer than
    ``min_count`` usable ones is an error: a static INT8 model calibrated on a handful is a silent risk.
    """
    sources = calibration_sources(spec)
    warnings: list[str] = []
    if len(sources) == 1 and sources[0].suffix == ".npy":
        array = np.load(sources[0]).astype(np.float32)
        if list(array.shape[1:]) != list(shape[1:]):
            raise DataError(
                sources[0],
                f"calibration array shape {list(array.shape)} does not match input [N, {shape[1:]}]",
                "save preprocessed tensors with the model's input shape",
            )
        tensors = list(array[: spec.count])
    else:
        tensors = []
        for path in sources:
            if len(tensors) >= spec.count:
                break
            try:
                tensors.append(to_tensor(read_image(path), input_spec))
            except DataError as exc:
                warnings.append(f"skipped calibration image: {exc}")
                log.warning("skipped calibration image %s", path)
    if len(tensors) < spec.min_count:
        raise DataError(
            spec.images,
            f"only {len(tensors)} usable calibration images, at least {spec.min_count} required",
            "add readable images or lower calibration.min_count",
        )
    return np.stack(tensors).astype(np.float32), warnings


@dataclass(frozen=True)
class PairSet:
    """Unique images plus index pairs into them, so each image is run once per artifact."""

    images: list[Path]
    pairs: np.ndarray
    """int [M, 2] indices into ``images``."""
    labels: np.ndarray
    """int [M], 1 same / 0 different."""
    source: Path

    def to_json(self) -> dict[str, list[str] | list[int]]:
        return {
            "images": [str(p) for p in self.images],
            "pairs": [int(i) for i in self.pairs.reshape(-1)],
            "labels": [int(v) for v in self.labels],
        }

    @classmethod
    def from_json(cls, data: dict[str, list[str] | list[int]], source: Path) -> PairSet:
        """The inverse of :meth:`to_json`."""
        return cls(
            images=[Path(p) for p in data["images"]],
            pairs=np.asarray(data["pairs"], dtype=np.int64).reshape(-1, 2),
            labels=np.asarray(data["labels"], dtype=np.int64),
            source=source,
        )


@dataclass(frozen=True)
class EvaluationSet:
    """What every variant runs on: preprocessed tensors from ``array`` (a .npy), then ``images``
    (each run once), with optional pairs indexing into that combined order."""

    array: Path | None
    images: list[Path]
    """Image files: those of ``evaluation.images`` first, then pair images not already listed."""
    from_images: int
    """How many of ``images`` come from ``evaluation.images`` (the rest only from the pairs)."""
    pairs: np.ndarray | None
    """int [M, 2] indices into the tensors (array rows first, then ``images``); None without pairs."""
    labels: np.ndarray | None
    pairs_file: Path | None
    count: int | None = None
    """Rows of ``array`` used (``evaluation.count``); None = all."""

    def files(self) -> list[Path]:
        """Every file the evaluation data is made from (the evaluation step's inputs)."""
        return [
            *([self.array] if self.array else []),
            *self.images,
            *([self.pairs_file] if self.pairs_file else []),
        ]


def load_evaluation(spec: EvaluationSpec, memo: Hasher | None = None) -> EvaluationSet:
    """Evaluation images and/or pairs as one set (see :class:`EvaluationSpec`); ``memo`` as in
    :func:`load_pairs`.

    Raises:
        DataError: a source is missing or malformed (pairs: every bad line listed together).
    """
    array, images = None, []
    if spec.images is not None:
        files = image_sources(spec.images, "evaluation", "evaluation.images")
        if len(files) == 1 and files[0].suffix == ".npy":
            array = files[0]
        else:
            images = files[: spec.count] if spec.count else files
    from_images = len(images)
    pairs = labels = None
    if spec.pairs is not None:
        pair_set = load_pairs(spec.pairs, memo)
        offset = 0 if array is None else _array_rows(array, spec.count)
        position = {p: i for i, p in enumerate(images)}
        for image in pair_set.images:
            if image not in position:
                position[image] = len(images)
                images.append(image)
        remap = np.asarray([offset + position[p] for p in pair_set.images], dtype=np.int64)
        pairs, labels = remap[pair_set.pairs], pair_set.labels
    return EvaluationSet(array, images, from_images, pairs, labels, spec.pairs, spec.count)


def _array_rows(array: Path, count: int | None) -> int:
    rows = int(np.load(array, mmap_mode="r").shape[0])
    return min(rows, count) if count else rows


PAIRS_FORMAT = (
    "each line must be `image1 image2 label` with label 1 (same) or 0 (different); quote a path that "
    'holds spaces (`"my photos/a.jpg"`) or separate the fields with tabs'
)
MISSING_FIX = "fix the paths; they are relative to the folder of the file that lists them"
MAX_LISTED = 20
"""Bad lines listed in one error; the rest are counted ("+N more")."""


def load_pairs(path: Path, memo: Hasher | None = None) -> PairSet:
    """Parse a pairs file: ``image1 image2 label`` per line, paths relative to the file.

    Fields are split like a shell does (quote a path that holds spaces: ``"my photos/a.jpg"``), or at
    tabs when the line has any. ``#`` starts a comment line. ``memo`` keeps the parse while the file
    is unchanged (the plan reads it on every build: 28k lines, ~60 ms); the images are still checked
    to exist each time.

    Raises:
        DataError: the file is missing or unreadable; every malformed line and every missing image,
            listed together with line numbers; no pairs; only one label.
    """
    if not path.is_file():
        raise DataError(path, "pairs file not found", "fix [models].evaluation.pairs")
    if memo is None:
        return _parse_pairs(path)
    pair_set = PairSet.from_json(memo.derived(path, "pairs", lambda p: _parse_pairs(p).to_json()), path)
    if all(image.is_file() for image in pair_set.images):
        return pair_set
    return _parse_pairs(path)  # an image went missing since the parse was kept: this names it


def _parse_pairs(path: Path) -> PairSet:
    index: dict[Path, int] = {}
    by_text: dict[str, int | None] = {}
    """Pairs files repeat each image thousands of times: resolve and stat each distinct path once."""
    pairs: list[tuple[int, int]] = []
    labels: list[int] = []
    problems: list[tuple[int, str]] = []
    base = path.parent.resolve()
    for lineno, raw in enumerate(_read_lines(path), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts, trouble = _pair_fields(line)
        if trouble:
            problems.append((lineno, trouble))
            continue
        ids: list[int] = []
        for rel in parts[:2]:
            if rel not in by_text:
                image = Path(os.path.normpath(base / rel))
                if image not in index and image.is_file():
                    index[image] = len(index)
                by_text[rel] = index.get(image)
            found = by_text[rel]
            if found is None:
                missing = Path(os.path.normpath(base / rel))
                problems.append((lineno, f"image {rel!r} does not exist ({missing})"))
            else:
                ids.append(found)
        if len(ids) == 2:
            pairs.append((ids[0], ids[1]))
            labels.append(int(parts[2]))
    if problems:
        kinds = {"malformed" if text.startswith("malformed") else "missing" for _, text in problems}
        fixes = [
            fix for kind, fix in (("malformed", PAIRS_FORMAT), ("missing", MISSING_FIX)) if kind in kinds
        ]
        raise _bad_lines(path, problems, "; ".join(fixes))
    if not pairs:
        raise DataError(path, "no pairs in the file", "add `image1 image2 label` lines")
    label_arr = np.asarray(labels, dtype=np.int64)
    if label_arr.min() == label_arr.max():
        raise DataError(
            path, "all pairs have the same label", "include both same (1) and different (0) pairs"
        )
    return PairSet(images=list(index), pairs=np.asarray(pairs, dtype=np.int64), labels=label_arr, source=path)


def _pair_fields(line: str) -> tuple[list[str], str | None]:
    """``(fields, problem)`` for one non-comment line; ``problem`` (with a hint) is None when it is fine."""
    if "\t" in line:
        # Tab-separated: spaces belong to the paths.
        parts = [_unquote(p.strip()) for p in line.split("\t") if p.strip()]
    elif not any(q in line for q in "\"'"):
        # No quotes: shlex would split on whitespace too, ~40x slower (28k pairs: 0.5 s on every build).
        parts = line.split()
    else:
        lexer = shlex.shlex(line, posix=True)
        lexer.whitespace_split = True
        lexer.commenters = ""
        lexer.escape = ""  # keep backslashes literal: Windows-style paths
        try:
            parts = list(lexer)
        except ValueError:
            return [], (
                f"malformed line {line!r}: unclosed quote (a path holding a quote character needs the "
                'other kind around it, `"O\'Brien.jpg"`, or tab-separated fields)'
            )
    if len(parts) > 3 and parts[-1] in ("0", "1") and not any(q in line for q in "\"'\t"):
        # Split the example where a field ends like an image file, so it shows the user's own paths.
        ends = [k for k in range(1, len(parts) - 1) if Path(parts[k - 1]).suffix.lower() in IMAGE_SUFFIXES]
        k = ends[0] if ends else len(parts) // 2
        first, second = " ".join(parts[:k]), " ".join(parts[k:-1])
        return [], (
            f"malformed line {line!r}: {len(parts)} fields where 3 are expected; a path seems to contain "
            f'a space: write `"{first}" "{second}" {parts[-1]}`, or separate the three fields with tabs'
        )
    if len(parts) != 3:
        return [], f"malformed line {line!r}: {len(parts)} fields where 3 are expected"
    if parts[2] not in ("0", "1"):
        return [], f"malformed line {line!r}: label {parts[2]!r} is not 1 (same) or 0 (different)"
    return parts, None


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(path, "not a UTF-8 text file", "save it as UTF-8 text, one entry per line") from None


def _bad_lines(path: Path, problems: list[tuple[int, str]], fix: str) -> DataError:
    """One error for all bad lines of ``path`` (``problems``: line number, text), up to MAX_LISTED listed.

    A single problem keeps the ``file:line: problem`` form editors and CI logs link to.
    """
    if len(problems) == 1:
        lineno, text = problems[0]
        return DataError(f"{path}:{lineno}", text, fix)
    listed = [f"  {path}:{lineno}: {text}" for lineno, text in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        listed.append(f"  +{len(problems) - MAX_LISTED} more")
    lines = len({lineno for lineno, _ in problems})
    return DataError(path, f"{len(problems)} problems on {lines} lines:\n" + "\n".join(listed), fix)


def load_evaluation_tensors(evalset: EvaluationSet, input_spec: InputSpec, shape: list[int]) -> np.ndarray:
    """float32 [N, *shape[1:]]: the .npy rows (checked against ``shape``), then each image preprocessed.

    Raises:
        DataError: the .npy does not hold tensors of the model's input shape, or an image is unreadable.
    """
    parts = []
    if evalset.array is not None:
        array = np.load(evalset.array).astype(np.float32)[: evalset.count]
        if list(array.shape[1:]) != list(shape[1:]):
            raise DataError(
                evalset.array,
                f"evaluation array shape {list(array.shape)} does not match input [N, {shape[1:]}]",
                "save preprocessed tensors with the model's input shape",
            )
        parts.append(array)
    if evalset.images:
        parts.append(
            np.stack([to_tensor(read_image(p), input_spec) for p in evalset.images]).astype(np.float32)
        )
    return np.concatenate(parts)


class CalibrationDataMeta(BaseModel):
    """The calibration data step's record."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    count: int
    warnings: list[str]


class EvaluationMeta(EvaluationCounts):
    """The evaluation data step's record: what every number of the model is measured on."""


def calibration_data_step(
    spec: CalibrationSpec, input_spec: InputSpec, shape: list[int], out: Path
) -> dict[str, object]:
    """The calibration data step body: ``out/calibration.npy`` float32 [N, *shape[1:]]."""
    tensors, warnings = load_calibration(spec, input_spec, shape)
    np.save(out / "calibration.npy", tensors)
    return CalibrationDataMeta(count=len(tensors), warnings=warnings).model_dump(mode="json")


def evaluation_data_step(
    evalset: EvaluationSet, input_spec: InputSpec, shape: list[int], out: Path
) -> dict[str, object]:
    """The evaluation data step body: ``tensors.npy`` [N, *shape[1:]], ``pairs.npy`` int [M, 2] and
    ``labels.npy`` int [M] (empty without pairs)."""
    tensors = load_evaluation_tensors(evalset, input_spec, shape)
    np.save(out / "tensors.npy", tensors)
    pairs = evalset.pairs if evalset.pairs is not None else np.zeros((0, 2), np.int64)
    labels = evalset.labels if evalset.labels is not None else np.zeros((0,), np.int64)
    np.save(out / "pairs.npy", pairs)
    np.save(out / "labels.npy", labels)
    only_pairs = len(evalset.images) - evalset.from_images
    return EvaluationMeta(
        images=len(tensors),
        from_images=len(tensors) - only_pairs,
        from_pairs_only=only_pairs,
        pairs=len(labels),
        positives=int(labels.sum()),
        negatives=int((labels == 0).sum()),
        pairs_file=evalset.pairs_file.name if evalset.pairs_file else None,
    ).model_dump(mode="json")
