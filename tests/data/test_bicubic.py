"""Tests for elsr.data.bicubic: MATLAB-compatible bicubic resizing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from elsr.data.bicubic import downscale, imresize, upscale
from elsr.errors import ElsrError
from elsr.io.images import mod_crop, read_image

SET5 = ("baby", "bird", "butterfly", "head", "woman")


def _pair(data: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    hr = mod_crop(read_image(data / "Set5" / "HR" / f"{name}.png"), 4)
    lr = read_image(data / "Set5" / "LR_bicubic" / "X4" / f"{name}x4.png")
    return hr, lr


@pytest.mark.parametrize("name", SET5)
def test_downscale_matches_matlab_on_set5(shared_data: Path, name: str) -> None:
    hr, lr = _pair(shared_data, name)
    ours = downscale(hr, 4)
    assert ours.dtype == np.uint8 and ours.shape == lr.shape
    diff = np.abs(ours.astype(int) - lr.astype(int))
    assert diff.max() <= 2
    assert diff.mean() <= 0.15


@pytest.mark.parametrize("name", SET5)
def test_opencv_cubic_is_further_from_matlab(shared_data: Path, name: str) -> None:
    hr, lr = _pair(shared_data, name)
    ours = np.abs(downscale(hr, 4).astype(int) - lr).mean()
    cv = cv2.resize(hr, (lr.shape[1], lr.shape[0]), interpolation=cv2.INTER_CUBIC)
    theirs = np.abs(cv.astype(int) - lr).mean()
    assert theirs > 1.0  # several grey levels off on average: no antialiasing
    assert theirs > 10 * ours + 0.5


@pytest.mark.parametrize("shape", [(37, 53, 3), (37, 53), (1, 9, 3)])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upscale_shapes(shape: tuple[int, ...], scale: int, rng: np.random.Generator) -> None:
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    out = upscale(img, scale)
    assert out.shape == (shape[0] * scale, shape[1] * scale) + shape[2:]
    assert out.dtype == np.uint8


@pytest.mark.parametrize("scale, expected", [(1 / 2, (19, 27)), (1 / 3, (13, 18)), (1 / 4, (10, 14)), (1.5, (56, 80))])
def test_imresize_output_size_is_ceil(scale: float, expected: tuple[int, int], rng: np.random.Generator) -> None:
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert imresize(img, scale).shape == expected + (3,)


def test_imresize_to_size(rng: np.random.Generator) -> None:
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert imresize(img, size=(20, 90)).shape == (20, 90, 3)
    assert imresize(img[:, :, 0], size=(5, 7)).shape == (5, 7)


def test_imresize_needs_exactly_one_of_scale_and_size() -> None:
    img = np.zeros((8, 8), np.uint8)
    with pytest.raises(ElsrError):
        imresize(img)
    with pytest.raises(ElsrError):
        imresize(img, 2, size=(16, 16))


@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 2, 3, 4])
def test_constant_image_stays_constant(scale: float) -> None:
    img = np.full((24, 36, 3), 77, np.uint8)
    out = imresize(img, scale)
    assert np.all(out == 77)
    flt = imresize(np.full((24, 36), 0.3), scale)
    np.testing.assert_allclose(flt, 0.3, atol=1e-12)


def test_float_input_gives_unclipped_float(rng: np.random.Generator) -> None:
    img = rng.integers(0, 256, (32, 40, 3)).astype(np.uint8)
    flt = downscale(img.astype(np.float32), 4)
    assert flt.dtype == np.float64 and flt.shape == (8, 10, 3)
    assert np.abs(flt - downscale(img, 4)).max() <= 1.0
    step = np.zeros((4, 8))
    step[:, 4:] = 1.0
    up = upscale(step, 4)  # cubic overshoots at the edge; floats are not clipped
    assert up.min() < 0 and up.max() > 1


def test_downscale_rejects_non_multiple_shape() -> None:
    with pytest.raises(ElsrError, match=r"33x40.*mod-crop"):
        downscale(np.zeros((33, 40, 3), np.uint8), 4)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upscale_of_ramp_is_a_ramp(scale: int) -> None:
    cols = np.arange(1, 21, dtype=np.float64)  # 1-based input positions
    ramp = np.tile(3.0 * cols + 10.0, (6, 1))
    out = upscale(ramp, scale)
    u = np.arange(1, out.shape[1] + 1)
    x = u / scale + 0.5 * (1 - 1 / scale)  # MATLAB's output -> input coordinate map
    interior = (x > 3) & (x < 18)  # away from the mirrored borders
    np.testing.assert_allclose(out[:, interior], np.tile(3.0 * x[interior] + 10.0, (out.shape[0], 1)), atol=1e-9)
