"""Plan the views, write the image folders, the pairs file and the notes that describe them.

File names and pair order are pure functions of the identities and counts, and every image is
PNG-encoded by OpenCV (deterministic), so two runs produce byte-identical data.
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceid_data import PrepareError
from faceid_data.augment import (
    CLEAN,
    DEGRADATIONS,
    Align,
    ViewParams,
    render_view,
    sample_hard_params,
    sample_params,
    seed_for,
)
from faceid_data.faces import Face

EVAL_DIR = "eval"
CALIBRATION_DIR = "calibration"
PAIRS_FILE = "pairs.txt"
VIEWS_FILE = "views.csv"
CLEAN_TIER, MILD, HARD = "clean", "mild", "hard"


@dataclass(frozen=True)
class View:
    """One image to write: which face, which augmentation, and where."""

    split: str
    identity: str
    index: int
    face: Face
    params: ViewParams
    tier: str = MILD
    """``clean`` (the aligned crop itself), ``mild`` (an ordinary capture) or ``hard`` (a bad one)."""
    degradation: str = ""
    """For hard views: the degradation chosen for this view (others may be added on top)."""

    @property
    def relpath(self) -> str:
        """Path relative to the data folder (and so to ``pairs.txt``, which sits in it)."""
        return f"{self.split}/{self.identity}_{self.index:02d}.png"


@dataclass(frozen=True, order=True)
class Pair:
    first: str
    second: str
    label: int


@dataclass(frozen=True)
class PairCounts:
    """Positives split by kind: different real photos of a person vs two views of one photo.

    ``positive_hard`` and ``negative_hard`` count the pairs (of either kind) with a hard view in them.
    """

    positive_real: int
    positive_augmented: int
    negative: int
    positive_hard: int = 0
    negative_hard: int = 0

    @property
    def positive(self) -> int:
        return self.positive_real + self.positive_augmented


def group_by_identity(faces: Iterable[Face]) -> dict[str, list[Face]]:
    groups: dict[str, list[Face]] = defaultdict(list)
    for face in faces:
        groups[face.identity].append(face)
    return {identity: groups[identity] for identity in sorted(groups)}


def plan_eval(
    groups: dict[str, list[Face]], views_per_identity: int, hard_per_identity: int = 0
) -> list[View]:
    """Views cycle over an identity's photos; the first view of each photo is the clean crop.

    The first ``views_per_identity`` views are clean or mild; the ``hard_per_identity`` after them
    are hard, their chosen degradation cycling through ``DEGRADATIONS`` so that each identity gets
    each degradation once per cycle. Hard seeds are namespaced apart from mild ones.
    """
    views = []
    for identity, faces in groups.items():
        for k in range(views_per_identity + hard_per_identity):
            face = faces[k % len(faces)]
            if k < len(faces):
                views.append(View(EVAL_DIR, identity, k, face, CLEAN, CLEAN_TIER))
            elif k < views_per_identity:
                params = sample_params(seed_for(EVAL_DIR, face.key, str(k)))
                views.append(View(EVAL_DIR, identity, k, face, params, MILD))
            else:
                degradation = DEGRADATIONS[(k - views_per_identity) % len(DEGRADATIONS)]
                params = sample_hard_params(seed_for(EVAL_DIR, HARD, face.key, str(k)), degradation)
                views.append(View(EVAL_DIR, identity, k, face, params, HARD, degradation))
    return views


def plan_calibration(groups: dict[str, list[Face]], count: int) -> list[View]:
    """Round-robin over identities; seeds are namespaced so no view repeats an evaluation view."""
    identities = list(groups)
    views = []
    for j in range(count):
        identity = identities[j % len(identities)]
        local = j // len(identities)
        face = groups[identity][local % len(groups[identity])]
        params = sample_params(seed_for(CALIBRATION_DIR, face.key, str(local)))
        views.append(View(CALIBRATION_DIR, identity, local, face, params))
    return views


def build_pairs(items: Iterable[tuple[str, str]]) -> list[Pair]:
    """Every unordered pair of ``(relpath, identity)`` items; label 1 for the same identity."""
    ordered = sorted(items)
    return [
        Pair(a, b, int(id_a == id_b)) for i, (a, id_a) in enumerate(ordered) for b, id_b in ordered[i + 1 :]
    ]


def count_pairs(
    pairs: Iterable[Pair], source_of: dict[str, str], hard: frozenset[str] = frozenset()
) -> PairCounts:
    """``source_of`` maps an image to its photo; ``hard`` holds the hard views' paths."""
    real = augmented = negative = positive_hard = negative_hard = 0
    for pair in pairs:
        with_hard = pair.first in hard or pair.second in hard
        if not pair.label:
            negative += 1
            negative_hard += with_hard
            continue
        positive_hard += with_hard
        if source_of[pair.first] != source_of[pair.second]:
            real += 1
        else:
            augmented += 1
    return PairCounts(real, augmented, negative, positive_hard, negative_hard)


def format_pairs(pairs: Iterable[Pair]) -> str:
    return "".join(f"{p.first} {p.second} {p.label}\n" for p in pairs)


def parse_pairs(text: str) -> list[Pair]:
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if len(fields) != 3 or fields[2] not in {"0", "1"}:
            raise PrepareError(f"{PAIRS_FILE} line {number}: expected 'path1 path2 0|1', got {line!r}")
        pairs.append(Pair(fields[0], fields[1], int(fields[2])))
    return pairs


def encode_png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise PrepareError("OpenCV failed to PNG-encode an image")
    return encoded.tobytes()


def write_pngs(data_dir: Path, pngs: Iterable[tuple[str, bytes]]) -> dict[str, bytes]:
    """Write each ``(relative path, PNG bytes)``; returns the bytes by relative path (for hashing/checks)."""
    written: dict[str, bytes] = {}
    for relpath, png in pngs:
        path = data_dir / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        written[relpath] = png
    return written


def write_views(data_dir: Path, views: Iterable[View], align: Align) -> dict[str, bytes]:
    """Render and write each view; returns the PNG bytes by relative path (for hashing/checks)."""
    return write_pngs(
        data_dir,
        ((v.relpath, encode_png(render_view(v.face.image, v.face.row, v.params, align))) for v in views),
    )


def check_disjoint(
    written: dict[str, bytes],
    eval_dir: str = EVAL_DIR,
    calibration_dir: str = CALIBRATION_DIR,
    what: str = "calibration images identical to evaluation images",
) -> None:
    """Calibration must not contain an evaluation image (it would flatter static INT8)."""
    eval_bytes = {png for rel, png in written.items() if rel.startswith(f"{eval_dir}/")}
    clash = sorted(
        rel for rel, png in written.items() if rel.startswith(f"{calibration_dir}/") and png in eval_bytes
    )
    if clash:
        raise PrepareError(f"{what}: {clash[:3]}")


def views_csv(views: Iterable[View]) -> str:
    """Provenance of every image: source photo, face, and the exact augmentation parameters."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fields = list(CLEAN.describe())
    writer.writerow(["path", "identity", "source", "face", "tier", "degradation", *fields])
    for view in views:
        values = view.params.describe()
        writer.writerow(
            [
                view.relpath,
                view.identity,
                view.face.origin,
                view.face.key,
                view.tier,
                view.degradation,
                *(values[f] for f in fields),
            ]
        )
    return buffer.getvalue()


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, path)
