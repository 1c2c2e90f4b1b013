"""Tests for elsr.data.metrics: PSNR / SSIM in the BasicSR convention."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from elsr.data.bicubic import downscale, upscale
from elsr.data.metrics import C1, image_metrics, psnr, rgb_to_y, ssim
from elsr.errors import ElsrError
from elsr.io.images import mod_crop, read_image


def test_psnr_constant_difference() -> None:
    img = np.full((16, 16, 3), 100, np.uint8)
    ref = np.full((16, 16, 3), 105, np.uint8)
    assert psnr(img, ref, 0) == pytest.approx(34.1514, abs=1e-4)
    assert psnr(img, ref, 0) == pytest.approx(10 * math.log10(255**2 / 25))


def test_psnr_known_mse() -> None:
    img = np.zeros((2, 2, 3), np.uint8)
    ref = img.copy()
    ref[0, 0, 0] = 6  # squared errors 36 + 12 over 12 values: MSE = 4
    ref[1, 1, 2] = 2
    ref[0, 1, 1] = 2
    ref[1, 0, 0] = 2
    assert psnr(img, ref, 0) == pytest.approx(10 * math.log10(255**2 / 4))


def test_psnr_identical_is_inf(rng: np.random.Generator) -> None:
    img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert psnr(img, img.copy(), 0) == math.inf


def test_border_crop_excludes_border(rng: np.random.Generator) -> None:
    ref = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    img = ref.copy()
    img[:2] = 0
    img[:, -2:] = 255
    assert psnr(img, ref, 2) == math.inf
    assert psnr(img, ref, 2, y_channel=True) == math.inf
    assert psnr(img, ref, 1) < math.inf


def test_rgb_to_y_pure_colours() -> None:
    img = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0]]], np.uint8)
    y = rgb_to_y(img)
    assert y.dtype == np.float64 and y.shape == (1, 3)
    np.testing.assert_allclose(y[0], [235.0, 16.0, 16.0 + 65.481], atol=1e-9)
    np.testing.assert_allclose(rgb_to_y(img.astype(np.float64)), y)


def test_ssim_of_image_with_itself_is_one(rng: np.random.Generator) -> None:
    img = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    assert ssim(img, img.copy(), 4) == pytest.approx(1.0)
    assert ssim(img, img.copy(), 4, y_channel=True) == pytest.approx(1.0)


def test_ssim_of_constant_images() -> None:
    img = np.full((32, 32, 3), 100, np.uint8)
    ref = np.full((32, 32, 3), 110, np.uint8)
    expected = (2 * 100 * 110 + C1) / (100**2 + 110**2 + C1)  # sigmas are 0: contrast term is 1
    assert ssim(img, ref, 0) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(22006.5025 / 22106.5025)  # = 0.995476


def test_ssim_matches_skimage_on_set5(shared_data: Path) -> None:
    hr = mod_crop(read_image(shared_data / "Set5" / "HR" / "butterfly.png"), 4)
    sr = upscale(downscale(hr, 4), 4)
    b = 4
    crop = (slice(b, -b), slice(b, -b))
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    ref_rgb = structural_similarity(sr[crop].astype(np.float64), hr[crop].astype(np.float64), channel_axis=2, **kw)
    ref_y = structural_similarity(rgb_to_y(sr)[crop], rgb_to_y(hr)[crop], **kw)
    assert ssim(sr, hr, b) == pytest.approx(ref_rgb, abs=1e-6)
    assert ssim(sr, hr, b, y_channel=True) == pytest.approx(ref_y, abs=1e-6)


def test_shape_mismatch_raises() -> None:
    a = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ElsrError, match="shapes differ"):
        psnr(a, np.zeros((16, 20, 3), np.uint8), 0)
    with pytest.raises(ElsrError, match="shapes differ"):
        ssim(a, np.zeros((16, 16, 1), np.uint8), 0)


def test_image_metrics_keys(rng: np.random.Generator) -> None:
    hr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-3, 4, hr.shape), 0, 255).astype(np.uint8)
    m = image_metrics(sr, hr, 4)
    assert set(m) == {"psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y"}
    assert m["psnr_rgb"] == pytest.approx(psnr(sr, hr, 4))
    assert 0 < m["ssim_y"] < 1
