"""elsr.io.images: the header probe and the decoder refuse and accept the same files."""

import logging

import cv2
import numpy as np
import pytest

from elsr.errors import ElsrError
from elsr.io.images import probe_image, read_image
from tests.helpers import smooth_image


def unusual(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A 40x48 image of ``kind`` in OpenCV's channel order."""
    rgb = smooth_image(rng, 40, 48)
    return {
        "greyscale": rgb[:, :, 0],
        "greyscale with alpha": np.dstack([rgb[:, :, 0], np.full((40, 48), 255, np.uint8)]),
        "RGBA": np.dstack([rgb, np.full((40, 48), 255, np.uint8)]),
        "16-bit": rgb.astype(np.uint16) * 257,
        "16-bit greyscale": rgb[:, :, 0].astype(np.uint16) * 257,
    }[kind]


def write(path, image: np.ndarray):
    if image.ndim == 3 and image.shape[2] == 2:  # OpenCV cannot write grey+alpha: encode it by hand
        from PIL import Image
        Image.fromarray(image, "LA").save(path)
    else:
        assert cv2.imwrite(str(path), image)
    return path


@pytest.mark.parametrize("kind", ["greyscale", "greyscale with alpha", "RGBA", "16-bit", "16-bit greyscale"])
def test_probe_and_read_refuse_the_same_png_with_the_same_message(tmp_path, rng, kind):
    path = write(tmp_path / "odd.png", unusual(rng, kind))
    messages = []
    for reader in (probe_image, read_image):
        with pytest.raises(ElsrError) as caught:
            reader(path)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert f"{kind} image, expected 8-bit RGB" in messages[0] and "--convert" in messages[0]


@pytest.mark.parametrize("kind", ["greyscale", "greyscale with alpha", "RGBA", "16-bit"])
def test_convert_gives_rgb8_and_says_so(tmp_path, rng, kind, caplog):
    path = write(tmp_path / "odd.png", unusual(rng, kind))
    with caplog.at_level(logging.WARNING, logger="elsr.io.images"):
        image = read_image(path, convert=True)
    assert image.shape == (40, 48, 3) and image.dtype == np.uint8
    assert probe_image(path, convert=True) == (40, 48)
    assert f"{kind} image converted to 8-bit RGB" in caplog.text


def test_greyscale_jpeg_is_refused_by_probe_and_read(tmp_path, rng):
    path = tmp_path / "grey.jpg"
    assert cv2.imwrite(str(path), smooth_image(rng, 40, 48)[:, :, 0])
    for reader in (probe_image, read_image):
        with pytest.raises(ElsrError, match="greyscale image, expected 8-bit RGB"):
            reader(path)
    assert read_image(path, convert=True).shape == (40, 48, 3)


def test_rgb_png_reads_back_exactly(tmp_path, rng):
    rgb = smooth_image(rng, 40, 48)
    path = tmp_path / "ok.png"
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])
    assert probe_image(path) == (40, 48)
    np.testing.assert_array_equal(read_image(path), rgb)
