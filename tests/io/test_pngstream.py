import cv2
import numpy as np
import pytest

from elsr.errors import ElsrError
from elsr.io.pngstream import png_writer


def test_bands_make_the_same_image_opencv_reads(tmp_path, rng):
    img = rng.integers(0, 256, (203, 77, 3), dtype=np.uint8)
    img[50:90] = 17  # flat runs too
    with png_writer(tmp_path / "x.png", 77, 203) as write:
        for top in range(0, 203, 40):
            write(img[top: top + 40])
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "x.png"))[:, :, ::-1], img)


def test_an_incomplete_image_leaves_no_file(tmp_path, rng):
    with pytest.raises(ElsrError, match="incomplete: 10 of 20 rows"):
        with png_writer(tmp_path / "x.png", 8, 20) as write:
            write(rng.integers(0, 256, (10, 8, 3), dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_wrong_rows_are_refused(tmp_path):
    with pytest.raises(ValueError, match="expected"):
        with png_writer(tmp_path / "x.png", 8, 20) as write:
            write(np.zeros((4, 9, 3), np.uint8))
    with pytest.raises(ValueError, match="more than 20 rows"):
        with png_writer(tmp_path / "y.png", 8, 20) as write:
            write(np.zeros((21, 8, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
