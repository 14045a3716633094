"""Find and align faces the way OpenCV's SFace pipeline does: YuNet landmarks -> ``alignCrop``.

Alignment uses OpenCV's own implementation rather than a re-derivation, so the crops are what an
app using OpenCV would feed SFace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceid_data import PrepareError
from faceid_data.sources import Member

log = logging.getLogger(__name__)

CROP_SIZE = 112
DETECTION_SCORE = 0.8
ROI_MARGIN = 1.0
"""Context kept around a face box (in box sizes) so later rotations and shifts have real pixels."""

X_COLUMNS = [0, 4, 6, 8, 10, 12]
Y_COLUMNS = [1, 5, 7, 9, 11, 13]


@dataclass(frozen=True, eq=False)
class Photo:
    """One source photo, read (and padded) once: faces are found in it and the detector frames
    are made from it."""

    key: str
    """The file's name, e.g. ``obama.jpg``; unique across the pinned sources."""
    origin: str
    """``package==version:path`` inside the archive."""
    member: Member
    image: np.ndarray


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face: a region of its photo and the YuNet row (box, 5 landmarks, score) in it."""

    identity: str
    key: str
    origin: str
    image: np.ndarray
    row: np.ndarray


class Aligner:
    """YuNet detector + SFace's ``alignCrop``; OpenCV needs the SFace model just to align."""

    def __init__(self, yunet: Path, sface: Path) -> None:
        self._detector = cv2.FaceDetectorYN.create(str(yunet), "", (320, 320), DETECTION_SCORE, 0.3, 5000)
        self._recognizer = cv2.FaceRecognizerSF.create(str(sface), "")

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Detections as an (N, 15) float32 array, best score first."""
        height, width = image.shape[:2]
        self._detector.setInputSize((width, height))
        _, faces = self._detector.detect(image)
        if faces is None:
            return np.zeros((0, 15), np.float32)
        return faces[np.argsort(-faces[:, 14], kind="stable")]

    def feature(self, crop: np.ndarray) -> np.ndarray:
        """OpenCV's reference SFace embedding of an aligned crop (used to check channel order)."""
        return self._recognizer.feature(crop)

    def align(self, image: np.ndarray, row: np.ndarray) -> np.ndarray:
        crop = self._recognizer.alignCrop(image, row)
        if crop.shape != (CROP_SIZE, CROP_SIZE, 3):
            raise PrepareError(f"alignCrop returned shape {crop.shape}; expected {CROP_SIZE}x{CROP_SIZE}x3")
        return crop


def load_photo(path: Path, pad: int = 0) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise PrepareError(f"OpenCV cannot decode {path}; delete it and rerun to extract it again")
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return image


def _region(image: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut the face plus margin out of a big photo (faster warps) and move the row into it."""
    x, y, w, h = (float(v) for v in row[:4])
    margin = ROI_MARGIN * max(w, h)
    x0, y0 = max(int(x - margin), 0), max(int(y - margin), 0)
    x1 = min(int(x + w + margin) + 1, image.shape[1])
    y1 = min(int(y + h + margin) + 1, image.shape[0])
    moved = row.astype(np.float32).copy()
    moved[X_COLUMNS] -= x0
    moved[Y_COLUMNS] -= y0
    return np.ascontiguousarray(image[y0:y1, x0:x1]), moved


def read_photo(path: Path, member: Member, origin: str) -> Photo:
    return Photo(member.basename, origin, member, load_photo(path, member.pad))


def find_faces(aligner: Aligner, photo: Photo) -> list[Face]:
    """The ``member.faces`` most confident faces, left to right; one identity each."""
    image, member, origin = photo.image, photo.member, photo.origin
    rows = aligner.detect(image)
    if len(rows) < member.faces:
        raise PrepareError(
            f"{origin}: the detector found {len(rows)} face(s), expected {member.faces}; "
            f"check the OpenCV version (tested with 4.11.0) and the photo's sha256"
        )
    if len(rows) > member.faces:
        log.info("%s: keeping the %d most confident of %d detections", origin, member.faces, len(rows))
    kept = sorted(rows[: member.faces], key=lambda r: float(r[0]))
    faces = []
    for i, row in enumerate(kept):
        identity = member.identity if member.faces == 1 else f"{member.identity}-{i}"
        assert identity is not None
        region, moved = _region(image, row)
        faces.append(Face(identity, f"{member.basename}#{i}", origin, region, moved))
    return faces
