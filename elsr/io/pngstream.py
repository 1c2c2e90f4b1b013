"""Writing a PNG band by band, so a huge output image never has to be in memory at once.

8-bit RGB, the "Sub" filter on every row, zlib-compressed IDAT chunks flushed as they fill; the
file appears atomically when the last row has been written.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from elsr.errors import ElsrError
from elsr.io.files import atomic_path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHUNK_BYTES = 1 << 20
FILTER_SUB = 1


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _filtered(rows: np.ndarray) -> bytes:
    """Rows of HWC uint8 RGB as PNG scanlines: a filter byte, then each byte minus its left neighbour."""
    flat = rows.reshape(rows.shape[0], -1)
    out = np.empty((flat.shape[0], flat.shape[1] + 1), np.uint8)
    out[:, 0] = FILTER_SUB
    out[:, 1:4] = flat[:, :3]
    np.subtract(flat[:, 3:], flat[:, :-3], out=out[:, 4:])  # uint8 arithmetic wraps, as PNG wants
    return out.tobytes()


@contextlib.contextmanager
def png_writer(path: str | Path, width: int, height: int, level: int = 3) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield ``write(rows)`` taking (n, width, 3) uint8 RGB bands from top to bottom."""
    done = 0
    compressor = zlib.compressobj(level)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        pending = bytearray()

        def flush(data: bytes, final: bool = False) -> None:
            pending.extend(data)
            while len(pending) >= CHUNK_BYTES or (final and pending):
                handle.write(_chunk(b"IDAT", bytes(pending[:CHUNK_BYTES])))
                del pending[:CHUNK_BYTES]

        def write(rows: np.ndarray) -> None:
            nonlocal done
            if rows.dtype != np.uint8 or rows.ndim != 3 or rows.shape[1:] != (width, 3):
                raise ValueError(f"expected (n, {width}, 3) uint8 rows, got {rows.shape} {rows.dtype}")
            if done + rows.shape[0] > height:
                raise ValueError(f"more than {height} rows written")
            flush(compressor.compress(_filtered(rows)))
            done += rows.shape[0]

        yield write
        if done != height:
            raise ElsrError(f"image incomplete: {done} of {height} rows written", path=path)
        flush(compressor.flush(), final=True)
        handle.write(_chunk(b"IEND", b""))
