"""Super-resolving large images in overlapping tiles, with no seams.

Each tile is run with ``overlap`` extra LR pixels of context on every side; as long as the overlap
covers the model's receptive radius, the kept core of every tile is exactly what the whole image
would give there.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np

from elsr.errors import ElsrError
from elsr.io.files import human_bytes
from elsr.model.devices import available_memory
from elsr.model.network import RECEPTIVE_RADIUS

BYTES_PER_LR_PIXEL = 1024  # peak memory of one x4 forward pass per LR pixel (measured: 640-1012 B, PyTorch and onnxruntime)
RUNTIME_MB = 512  # Python, PyTorch and onnxruntime (about 265 MB), the decoded input, allocator slack
MIN_TILE = 16     # LR tile side: a smaller tile spends most of its time on its context (--tile 0: never tile)


MIN_IMAGE_MB = 64  # what a budget leaves an image at least, however small it is


def image_budget(max_memory_mb: float) -> float:
    """Bytes of ``max_memory_mb`` left for an image's own data once the runtime has its share."""
    return max(float(MIN_IMAGE_MB), max_memory_mb - RUNTIME_MB) * 2**20


def tile_bytes(tile: int, height: int, width: int, scale: int = 4, bands: int = 1) -> int:
    """Peak bytes of tiling a ``height`` x ``width`` LR image in tiles of ``tile`` (0: one pass over the whole
    image): one tile's forward pass plus ``bands`` output row bands of that tile's height."""
    rows, columns = (height, width) if tile <= 0 else (min(tile, height), min(tile, width))
    return BYTES_PER_LR_PIXEL * rows * columns + bands * rows * width * scale * scale * 3


def check_forward_fits(batch: int, height: int, width: int, what: str) -> None:
    """Refuse, before any work, one untiled forward pass of ``batch`` LR images of ``height`` x ``width`` that needs
    more memory than is available (``what`` names the option that asked for it), naming both figures."""
    need = BYTES_PER_LR_PIXEL * batch * height * width
    free = available_memory()
    if free is not None and need > free:
        raise ElsrError(f"{what}: one forward pass of {batch}x{height}x{width} LR pixels needs about "
                        f"{human_bytes(need)} of memory, and {human_bytes(free)} are available",
                        fix="choose a smaller size")


def auto_tile(max_memory_mb: float, width: int = 0, scale: int = 4, bands: int = 1) -> int:
    """LR tile side that keeps the process within ``max_memory_mb``: one tile's forward pass plus
    ``bands`` output row bands (each ``tile * scale`` rows of a ``width`` LR pixels wide image)."""
    budget = image_budget(max_memory_mb)
    band_per_row = bands * width * scale * scale * 3  # bytes of output per LR row of a band
    # largest t with t^2 * BYTES_PER_LR_PIXEL + t * band_per_row <= budget
    a, b = BYTES_PER_LR_PIXEL, band_per_row
    tile = (-b + math.sqrt(b * b + 4 * a * budget)) / (2 * a)
    return max(32, int(tile))


def _spans(length: int, step: int, overlap: int, window: int | None) -> Iterator[tuple[int, int, int, int]]:
    """Along one axis: (start, stop) of each kept span and (lo, hi) of the input it is computed from -
    ``overlap`` pixels of context on each side, or, with ``window``, exactly that many pixels placed
    inside the axis (for fixed-shape models)."""
    for start in range(0, length, step):
        stop = min(start + step, length)
        if window is None:
            lo, hi = max(0, start - overlap), min(length, stop + overlap)
        else:
            lo = min(max(start - overlap, 0), length - window)
            hi = lo + window
        yield start, stop, lo, hi


def upscale_bands(upscale: Callable[[np.ndarray], np.ndarray], lr: np.ndarray, scale: int, tile: int,
                  overlap: int = 2 * RECEPTIVE_RADIUS, window: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """``upscale(lr)`` as full-width output row bands from top to bottom, each computed in tiles of
    ``tile`` LR pixels a side with ``overlap`` pixels of context (0 or a small image: one band).

    ``window`` (height, width): every tile is exactly that size instead (a fixed-shape model; the
    image must be at least that large), keeping ``window - 2 * overlap`` pixels of each.
    """
    height, width = lr.shape[:2]
    if window is None and (tile <= 0 or (height <= tile and width <= tile)):
        yield upscale(lr)
        return
    steps = (tile, tile) if window is None else tuple(max(side - 2 * overlap, 1) for side in window)
    sides = window or (None, None)
    for top, bottom, y0, y1 in _spans(height, steps[0], overlap, sides[0]):
        band = np.empty(((bottom - top) * scale, width * scale, 3), np.uint8)
        for left, right, x0, x1 in _spans(width, steps[1], overlap, sides[1]):
            sr = upscale(lr[y0:y1, x0:x1])
            band[:, left * scale: right * scale] = \
                sr[(top - y0) * scale: (bottom - y0) * scale, (left - x0) * scale: (right - x0) * scale]
        yield band


def upscale_tiled(upscale: Callable[[np.ndarray], np.ndarray], lr: np.ndarray, scale: int, tile: int,
                  overlap: int = 2 * RECEPTIVE_RADIUS, window: tuple[int, int] | None = None) -> np.ndarray:
    """``upscale(lr)`` computed tile by tile (see :func:`upscale_bands`), as one image."""
    bands = upscale_bands(upscale, lr, scale, tile, overlap, window)
    first = next(bands)
    if first.shape[0] == lr.shape[0] * scale:
        return first
    out = np.empty((lr.shape[0] * scale, lr.shape[1] * scale, 3), np.uint8)
    out[: first.shape[0]] = first
    row = first.shape[0]
    for band in bands:
        out[row: row + band.shape[0]] = band
        row += band.shape[0]
    return out
