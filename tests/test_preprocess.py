"""Preprocessing is the app's contract: channel order, mean/std, layout, resize, all exact."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from packager.config import InputSpec
from packager.errors import DataError
from packager.preprocess import read_image, to_tensor


def _bgr() -> np.ndarray:
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # B, G, R
    return image


def test_rgb_nchw_with_mean_and_std() -> None:
    spec = InputSpec(size=[4, 4], channels="RGB", mean=[30, 20, 10], std=[2, 4, 5], layout="NCHW")
    tensor = to_tensor(_bgr(), spec)
    assert tensor.shape == (3, 4, 4) and tensor.dtype == np.float32
    np.testing.assert_array_equal(tensor[:, 0, 0], [0.0, 0.0, 0.0])


def test_bgr_nhwc_keeps_opencv_order() -> None:
    tensor = to_tensor(_bgr(), InputSpec(size=[4, 4], channels="BGR", layout="NHWC"))
    assert tensor.shape == (4, 4, 3)
    np.testing.assert_array_equal(tensor[0, 0], [10, 20, 30])


def test_gray_has_one_channel() -> None:
    tensor = to_tensor(_bgr(), InputSpec(size=[4, 4], channels="GRAY", mean=[0], std=[1]))
    assert tensor.shape == (1, 4, 4)


def test_center_crop_keeps_the_middle() -> None:
    image = np.zeros((8, 16, 3), np.uint8)
    image[:, 4:12] = 255
    tensor = to_tensor(image, InputSpec(size=[8, 8], resize="center-crop", channels="BGR"))
    assert tensor.min() == 255.0


def test_stretch_resizes_to_the_model_size() -> None:
    image = np.full((20, 10, 3), 7, np.uint8)
    assert to_tensor(image, InputSpec(size=[6, 5])).shape == (3, 6, 5)


def test_unreadable_image_is_a_named_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: OpenCV cannot decode"):
        read_image(path)


def test_read_image_returns_bgr(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), _bgr())
    np.testing.assert_array_equal(read_image(path)[0, 0], [10, 20, 30])


def test_letterbox_keeps_the_aspect_ratio_centred_on_black() -> None:
    from packager.config import InputSpec
    from packager.preprocess import to_tensor

    wide = np.full((90, 160, 3), 200, np.uint8)  # a 16:9 frame
    spec = InputSpec(size=[64, 64], channels="BGR", layout="NHWC", resize="letterbox")
    tensor = to_tensor(wide, spec)
    assert tensor.shape == (64, 64, 3)
    rows = np.flatnonzero(tensor[:, 32, 0] > 0)
    assert (rows.min(), rows.max()) == (14, 49)  # 36 rows of image (90 * 64/160), centred
    assert tensor[0, 32, 0] == 0 and tensor[32, 0, 0] == 200
