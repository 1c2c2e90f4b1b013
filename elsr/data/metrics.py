"""PSNR and SSIM in the BasicSR convention (the numbers SR papers report).

Inputs are uint8 HWC RGB images of equal shape. ``crop_border`` pixels are removed from every
side, values are compared in float64 on 0..255, and ``y_channel`` compares the BT.601 luma
(16..235) instead of the three RGB channels.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from elsr.errors import ElsrError

METRIC_KEYS = ("psnr_y", "psnr_rgb", "ssim_y", "ssim_rgb")  # what image_metrics gives, in report order
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


BT601_Y = (65.481, 128.553, 24.966)  # luma weights per RGB channel on 0..255, offset 16 (ITU-R BT.601)


def luma_weight_problem(weight: float) -> str | None:
    """Why ``weight`` cannot be a loss's share on luma (training stages, QAT), or None when it can."""
    if 0.0 <= weight < 1.0:
        return None
    return f"must be at least 0 and below 1 (at 1 colour is unconstrained), got {weight}"


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """HWC RGB on 0..255 -> float64 HW luma of ITU-R BT.601 on 16..235 (not rounded)."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ElsrError(f"Y channel needs an HWC RGB image, got shape {img.shape}",
                        fix="pass a 3-channel RGB image")
    rgb = img.astype(np.float64)
    return 16.0 + rgb @ np.array(BT601_Y) / 255.0


def _prepare(img: np.ndarray, ref: np.ndarray, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, optionally convert to Y, crop the border; returns float64 HWC arrays."""
    if img.shape != ref.shape:
        raise ElsrError(f"image shapes differ: {img.shape} vs reference {ref.shape}",
                        fix="compare the SR output with the mod-cropped HR image of the same size")
    if crop_border < 0:
        raise ElsrError(f"crop_border must be >= 0, got {crop_border}", fix="pass 0 or the SR scale")
    pair = []
    for a in (img, ref):
        a = rgb_to_y(a) if y_channel else a.astype(np.float64)
        if a.ndim == 2:
            a = a[:, :, None]
        if crop_border:
            a = a[crop_border:-crop_border, crop_border:-crop_border]
        pair.append(a)
    if pair[0].size == 0:
        raise ElsrError(f"nothing left of a {img.shape[:2]} image after cropping {crop_border} pixels per side",
                        fix="use larger images or a smaller crop_border")
    return pair[0], pair[1]


def psnr(img: np.ndarray, ref: np.ndarray, crop_border: int, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB (peak 255); +inf for identical images."""
    a, b = _prepare(img, ref, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two float64 HW arrays, over the 'valid' part of the Gaussian window."""
    k = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA)
    window = np.outer(k, k.T)
    r = SSIM_WINDOW // 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, window)[r:-r, r:-r]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + C1) * (2 * cov + C2)
    den = (mu_a ** 2 + mu_b ** 2 + C1) * (var_a + var_b + C2)
    return float(np.mean(num / den))


def ssim(img: np.ndarray, ref: np.ndarray, crop_border: int, y_channel: bool = False) -> float:
    """Structural similarity (11x11 Gaussian window, sigma 1.5); RGB is the mean over channels."""
    a, b = _prepare(img, ref, crop_border, y_channel)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ElsrError(f"image too small for SSIM after cropping: {a.shape[:2]}",
                        fix=f"use images of at least {SSIM_WINDOW} pixels plus the crop on each side")
    return float(np.mean([_ssim_channel(a[:, :, c], b[:, :, c]) for c in range(a.shape[2])]))


def image_metrics(sr: np.ndarray, hr: np.ndarray, scale: int) -> dict[str, float]:
    """PSNR and SSIM on RGB and on Y (the METRIC_KEYS), with the border of ``scale`` pixels cropped."""
    return {
        "psnr_rgb": psnr(sr, hr, scale),
        "psnr_y": psnr(sr, hr, scale, y_channel=True),
        "ssim_rgb": ssim(sr, hr, scale),
        "ssim_y": ssim(sr, hr, scale, y_channel=True),
    }


def mean_metrics(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over ``rows`` (one dict per image); {} for no rows."""
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}
