"""Super-resolving large images in overlapping tiles, with no seams.

Each tile is run with ``overlap`` extra LR pixels of context on every side; as long as the overlap
covers the model's receptive radius, the kept core of every tile is exactly what the whole image
would give there.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .model import RECEPTIVE_RADIUS

BYTES_PER_LR_PIXEL = 4 * (3 + 5 * 6 + 2 * 3 * 16)  # float activations of one x4 forward pass, per LR pixel


def auto_tile(max_memory_mb: float) -> int:
    """LR tile side whose forward pass fits in half of ``max_memory_mb`` (the rest: images, runtime)."""
    return max(64, int(math.sqrt(max_memory_mb * 2**20 / 2 / BYTES_PER_LR_PIXEL)))


def upscale_tiled(upscale: Callable[[np.ndarray], np.ndarray], lr: np.ndarray, scale: int, tile: int,
                  overlap: int = 2 * RECEPTIVE_RADIUS) -> np.ndarray:
    """``upscale(lr)`` computed tile by tile (``tile`` LR pixels a side; 0 or a small image: in one go)."""
    height, width = lr.shape[:2]
    if tile <= 0 or (height <= tile and width <= tile):
        return upscale(lr)
    out = np.empty((height * scale, width * scale, 3), np.uint8)
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(0, top - overlap), max(0, left - overlap)
            y1, x1 = min(height, bottom + overlap), min(width, right + overlap)
            sr = upscale(lr[y0:y1, x0:x1])
            out[top * scale: bottom * scale, left * scale: right * scale] = \
                sr[(top - y0) * scale: (bottom - y0) * scale, (left - x0) * scale: (right - x0) * scale]
    return out
