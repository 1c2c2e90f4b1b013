"""MATLAB-compatible bicubic resizing: the standard super-resolution degradation.

SR benchmarks (Set5, DIV2K, ...) build their low-resolution inputs with MATLAB's
``imresize(hr, 1/scale, 'bicubic')``, which antialiases when shrinking. OpenCV's INTER_CUBIC
does not, and uses a different kernel, so its output differs by several grey levels. This
module re-implements MATLAB's algorithm in numpy, one separable 1-D pass per dimension, each
a matrix product with a cached (out x in) weight matrix.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from elsr.errors import ElsrError

KERNEL_WIDTH = 4.0  # support of the cubic kernel, in input pixels (at scale 1)

# uint8 input: MATLAB's imresize rounds to uint8 after each 1-D pass. Measured against
# Set5/LR_bicubic/X4 (MATLAB imresize 1/4) over the five images:
#   rounding between passes: max abs diff 0, mean 0.0 on every image (bit-exact);
#   float between passes:    max abs diff 1-2, mean 0.095-0.110 per image.
# So uint8 input is rounded between passes, as MATLAB does.
ROUND_BETWEEN_PASSES = True


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=64)
def _weights(in_len: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    """The (out_len x in_len) matrix of one 1-D resize pass, with mirrored borders folded in."""
    shrink = antialias and scale < 1
    width = KERNEL_WIDTH / scale if shrink else KERNEL_WIDTH
    u = np.arange(1, out_len + 1, dtype=np.float64) / scale + 0.5 * (1 - 1 / scale)  # 1-based
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based input positions
    dist = u[:, None] - idx
    w = scale * _cubic(scale * dist) if shrink else _cubic(dist)
    w /= w.sum(axis=1, keepdims=True)
    # Symmetric padding: ... 2 1 | 1 2 ... n | n n-1 ... (0-based after the -1).
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    src = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    # Zero-weight taps contribute nothing, so MATLAB's removal of them needs no extra step here.
    mat = np.zeros((out_len, in_len))
    np.add.at(mat, (np.repeat(np.arange(out_len), taps), src.ravel()), w.ravel())
    mat.setflags(write=False)
    return mat


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    """Resize float64 ``img`` along ``axis`` (0 = height, 1 = width) to ``out_len``."""
    mat = _weights(img.shape[axis], out_len, scale, antialias)
    moved = np.moveaxis(img, axis, 0)
    out = mat @ moved.reshape(moved.shape[0], -1)
    return np.moveaxis(out.reshape((out_len,) + moved.shape[1:]), 0, axis)


def _round_uint8(img: np.ndarray) -> np.ndarray:
    """Clip to 0..255 and round half away from zero (MATLAB's conversion to uint8)."""
    return np.floor(np.clip(img, 0, 255) + 0.5)


def _output_size(in_len: int, scale: float) -> int:
    # ceil(in * scale) as MATLAB, ignoring float noise such as 49 * (1/7) = 7.000000000000001.
    return int(math.ceil(in_len * scale - 1e-9))


def imresize(img: np.ndarray, scale: float | None = None, size: tuple[int, int] | None = None,
             antialias: bool = True) -> np.ndarray:
    """Resize an HW or HWC image like MATLAB's ``imresize(img, scale_or_size, 'bicubic')``.

    Give exactly one of ``scale`` (output size ``ceil(in * scale)``) or ``size`` = (out_h, out_w).
    uint8 in gives uint8 out (rounded half away from zero, clipped); float in gives float64 out.
    """
    if img.ndim not in (2, 3):
        raise ElsrError(f"cannot resize an array of shape {img.shape}", fix="pass an HW or HWC image")
    if (scale is None) == (size is None):
        raise ElsrError("imresize needs exactly one of scale and size", fix="pass scale=... or size=(h, w)")
    h, w = img.shape[:2]
    if scale is not None:
        if not scale > 0:
            raise ElsrError(f"resize scale must be positive, got {scale}", fix="pass a scale > 0")
        scales = (float(scale), float(scale))
        out = (_output_size(h, scale), _output_size(w, scale))
    else:
        out = (int(size[0]), int(size[1]))
        if min(out) < 1:
            raise ElsrError(f"resize size must be positive, got {size}", fix="pass a size of at least (1, 1)")
        scales = (out[0] / h, out[1] / w)
    is_uint8 = img.dtype == np.uint8
    res = img.astype(np.float64)
    # MATLAB resizes the dimension with the smaller scale first (height first on ties).
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    for n, axis in enumerate(order):
        res = _resize_axis(res, axis, out[axis], scales[axis], antialias)
        if is_uint8 and (n == 1 or ROUND_BETWEEN_PASSES):
            res = _round_uint8(res)
    return res.astype(np.uint8) if is_uint8 else res


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """The SR degradation: MATLAB bicubic downscaling by an integer ``scale``.

    Height and width must be multiples of ``scale`` (mod-crop the image first).
    """
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ElsrError(f"image of shape {h}x{w} is not a multiple of scale {scale}",
                        fix=f"mod-crop it first (elsr.io.images.mod_crop(img, {scale}))")
    return imresize(hr, scale=1 / scale)


def upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic baseline: MATLAB bicubic upscaling by ``scale`` (same dtype rules as imresize)."""
    return imresize(lr, scale=scale)
