"""Calibration sources and evaluation pairs: bad data is named down to the line."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from packager.config import CalibrationSpec, InputSpec
from packager.datasets import calibration_sources, load_calibration, load_pairs
from packager.errors import DataError
from packager.hashing import Hasher

INPUT = InputSpec(size=[8, 8])


def _image(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))
    return path


def test_empty_calibration_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "calib").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        calibration_sources(CalibrationSpec(images=tmp_path / "calib"))


def test_unreadable_images_are_skipped_with_a_warning(tmp_path: Path) -> None:
    for i in range(3):
        _image(tmp_path / "calib" / f"ok{i}.png")
    (tmp_path / "calib" / "broken.png").write_bytes(b"garbage")
    tensors, warnings = load_calibration(
        CalibrationSpec(images=tmp_path / "calib", min_count=3), INPUT, [1, 3, 8, 8]
    )
    assert tensors.shape == (3, 3, 8, 8)
    assert len(warnings) == 1 and "broken.png" in warnings[0]


def test_too_few_usable_images_fails_with_the_minimum(tmp_path: Path) -> None:
    _image(tmp_path / "calib" / "ok.png")
    (tmp_path / "calib" / "broken.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="only 1 usable calibration images, at least 8"):
        load_calibration(CalibrationSpec(images=tmp_path / "calib"), INPUT, [1, 3, 8, 8])


def test_count_caps_the_calibration_set(tmp_path: Path) -> None:
    for i in range(5):
        _image(tmp_path / "calib" / f"{i}.png")
    tensors, _ = load_calibration(
        CalibrationSpec(images=tmp_path / "calib", count=2, min_count=1), INPUT, [1, 3, 8, 8]
    )
    assert len(tensors) == 2


def test_list_file_paths_are_relative_to_the_list(tmp_path: Path) -> None:
    _image(tmp_path / "imgs" / "a.png")
    (tmp_path / "list.txt").write_text("# calibration\nimgs/a.png\n")
    assert calibration_sources(CalibrationSpec(images=tmp_path / "list.txt")) == [
        (tmp_path / "imgs" / "a.png")
    ]


def test_npy_with_wrong_shape_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "calib.npy", np.zeros((4, 3, 16, 16), np.float32))
    with pytest.raises(DataError, match="does not match input"):
        load_calibration(CalibrationSpec(images=tmp_path / "calib.npy", min_count=1), INPUT, [1, 3, 8, 8])


def test_pairs_are_deduplicated_into_images(tmp_path: Path) -> None:
    for name in "abc":
        _image(tmp_path / f"{name}.png")
    (tmp_path / "pairs.txt").write_text("a.png b.png 1\na.png c.png 0\n\n# comment\nb.png c.png 0\n")
    evalset = load_pairs(tmp_path / "pairs.txt")
    assert len(evalset.images) == 3
    assert evalset.pairs.tolist() == [[0, 1], [0, 2], [1, 2]]
    assert evalset.labels.tolist() == [1, 0, 0]


def _kept_pairs(tmp_path: Path) -> tuple[Path, Path]:
    """A pairs file old enough for the memo to keep its parse (outside the racy window)."""
    for name in "abc":
        _image(tmp_path / f"{name}.png")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("a.png b.png 1\na.png c.png 0\n")
    os.utime(pairs, ns=(time.time_ns() - 10**10,) * 2)
    return pairs, tmp_path / "hashes.jsonl"


def test_a_kept_pairs_parse_is_the_parse(tmp_path: Path) -> None:
    pairs, memo = _kept_pairs(tmp_path)
    load_pairs(pairs, Hasher(memo=memo))
    kept = load_pairs(pairs, Hasher(memo=memo))
    fresh = load_pairs(pairs)
    assert kept.images == fresh.images
    assert kept.pairs.tolist() == fresh.pairs.tolist() and kept.labels.tolist() == fresh.labels.tolist()


def test_a_kept_pairs_parse_still_names_an_image_deleted_since(tmp_path: Path) -> None:
    pairs, memo = _kept_pairs(tmp_path)
    load_pairs(pairs, Hasher(memo=memo))
    (tmp_path / "c.png").unlink()
    with pytest.raises(DataError, match=r"pairs\.txt:2: image 'c\.png' does not exist"):
        load_pairs(pairs, Hasher(memo=memo))


def test_malformed_pair_line_names_the_line_number(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    (tmp_path / "pairs.txt").write_text("a.png a.png 1\na.png a.png same\n")
    with pytest.raises(DataError, match=r"pairs\.txt:2: malformed line"):
        load_pairs(tmp_path / "pairs.txt")


def test_missing_pair_image_names_line_and_path(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    (tmp_path / "pairs.txt").write_text("a.png a.png 1\na.png gone.png 0\n")
    with pytest.raises(DataError, match=r"pairs\.txt:2: image 'gone\.png' does not exist"):
        load_pairs(tmp_path / "pairs.txt")


def test_pairs_need_both_labels(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    (tmp_path / "pairs.txt").write_text("a.png a.png 1\n")
    with pytest.raises(DataError, match="same label"):
        load_pairs(tmp_path / "pairs.txt")


def test_every_bad_pair_line_is_reported_in_one_error(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    lines = ["a.png a.png 1", "a.png 1", "a.png gone.png 0", "a.png a.png 0", "a.png a.png same"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        load_pairs(tmp_path / "pairs.txt")
    message = str(exc.value)
    assert "3 problems" in message
    for where in (
        "pairs.txt:2: malformed line",
        "pairs.txt:3: image 'gone.png' does not exist",
        "pairs.txt:5:",
    ):
        assert where in message


def test_a_long_listing_of_bad_lines_is_capped_with_a_count(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    bad = [f"a.png missing{i}.png 0" for i in range(25)]
    (tmp_path / "pairs.txt").write_text("\n".join(["a.png a.png 1", *bad]) + "\n")
    with pytest.raises(DataError) as exc:
        load_pairs(tmp_path / "pairs.txt")
    message = str(exc.value)
    assert "25 problems" in message
    assert message.count("does not exist") == 20
    assert "+5 more" in message


def test_quoted_paths_with_spaces_are_read(tmp_path: Path) -> None:
    _image(tmp_path / "my photos" / "a.png")
    _image(tmp_path / "my photos" / "b.png")
    (tmp_path / "pairs.txt").write_text(
        '"my photos/a.png" "my photos/b.png" 1\n\'my photos/a.png\' "my photos/a.png" 0\n'
    )
    evalset = load_pairs(tmp_path / "pairs.txt")
    assert [p.name for p in evalset.images] == ["a.png", "b.png"]
    assert evalset.pairs.tolist() == [[0, 1], [0, 0]]


def test_tab_separated_paths_with_spaces_are_read(tmp_path: Path) -> None:
    _image(tmp_path / "my photos" / "a.png")
    _image(tmp_path / "my photos" / "b.png")
    (tmp_path / "pairs.txt").write_text(
        "my photos/a.png\tmy photos/b.png\t1\nmy photos/a.png\tmy photos/a.png\t0\n"
    )
    evalset = load_pairs(tmp_path / "pairs.txt")
    assert evalset.labels.tolist() == [1, 0]
    assert len(evalset.images) == 2


def test_unquoted_path_with_a_space_is_explained(tmp_path: Path) -> None:
    _image(tmp_path / "my photos" / "a.png")
    (tmp_path / "pairs.txt").write_text("my photos/a.png my photos/a.png 1\n")
    with pytest.raises(DataError) as exc:
        load_pairs(tmp_path / "pairs.txt")
    message = str(exc.value)
    assert "pairs.txt:1:" in message and "contain a space" in message
    assert '"my photos/a.png" "my photos/a.png" 1' in message and "tab" in message


def test_unbalanced_quote_names_the_line(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    (tmp_path / "pairs.txt").write_text('a.png a.png 1\n"a.png a.png 0\n')
    with pytest.raises(DataError, match=r"pairs\.txt:2: .*unclosed quote"):
        load_pairs(tmp_path / "pairs.txt")


def test_calibration_list_reports_every_missing_image_together(tmp_path: Path) -> None:
    _image(tmp_path / "imgs" / "a.png")
    (tmp_path / "list.txt").write_text("imgs/a.png\nimgs/gone1.png\n# note\nimgs/gone2.png\n")
    with pytest.raises(DataError) as exc:
        calibration_sources(CalibrationSpec(images=tmp_path / "list.txt"))
    message = str(exc.value)
    assert "list.txt:2: image 'imgs/gone1.png' does not exist" in message
    assert "list.txt:4: image 'imgs/gone2.png' does not exist" in message


def test_evaluation_images_alone_need_no_labels(tmp_path: Path) -> None:
    from packager.config import EvaluationSpec
    from packager.datasets import load_evaluation, load_evaluation_tensors

    for i in range(3):
        _image(tmp_path / "eval" / f"{i}.png", value=50 * i)
    evalset = load_evaluation(EvaluationSpec(images=tmp_path / "eval"))
    assert evalset.pairs is None and evalset.labels is None and evalset.from_images == 3
    tensors = load_evaluation_tensors(evalset, INPUT, [1, 3, 8, 8])
    assert tensors.shape == (3, 3, 8, 8) and tensors[2].max() == 100.0


def test_evaluation_images_and_pairs_share_one_tensor_order(tmp_path: Path) -> None:
    from packager.config import EvaluationSpec
    from packager.datasets import load_evaluation

    for name in "abc":
        _image(tmp_path / "eval" / f"{name}.png")
    _image(tmp_path / "faces" / "d.png")
    (tmp_path / "pairs.txt").write_text("faces/d.png eval/b.png 1\nfaces/d.png eval/a.png 0\n")
    evalset = load_evaluation(EvaluationSpec(images=tmp_path / "eval", pairs=tmp_path / "pairs.txt"))
    assert [p.name for p in evalset.images] == ["a.png", "b.png", "c.png", "d.png"]
    assert evalset.from_images == 3
    assert evalset.pairs is not None and evalset.pairs.tolist() == [[3, 1], [3, 0]]


def test_evaluation_npy_rows_come_first_and_are_checked_against_the_input(tmp_path: Path) -> None:
    from packager.config import EvaluationSpec
    from packager.datasets import load_evaluation, load_evaluation_tensors

    np.save(tmp_path / "eval.npy", np.ones((4, 3, 8, 8), np.float32))
    evalset = load_evaluation(EvaluationSpec(images=tmp_path / "eval.npy", count=2))
    assert load_evaluation_tensors(evalset, INPUT, [1, 3, 8, 8]).shape == (2, 3, 8, 8)
    with pytest.raises(DataError, match=r"evaluation array shape \[2, 3, 8, 8\] does not match"):
        load_evaluation_tensors(evalset, INPUT, [1, 3, 16, 16])


def test_evaluation_with_neither_images_nor_pairs_is_a_config_error() -> None:
    from pydantic import ValidationError

    from packager.config import EvaluationSpec

    with pytest.raises(ValidationError, match="give evaluation images"):
        EvaluationSpec()
