"""Reading and writing images as HWC uint8 RGB arrays, with clear errors for unusual files.

What is refused and what is converted:

- missing, truncated (PNG chunks or JPEG markers end early), corrupt (a PNG chunk checksum) or
  undecodable files: refused, naming the file;
- greyscale, greyscale+alpha, RGBA and 16-bit images: refused unless ``convert`` (then grey is
  replicated, alpha dropped, 16-bit scaled to 8-bit, with a log line), because each of these
  changes pixels the user may care about;
- palette PNGs: converted to RGB with a log line (the colours are exactly the palette's: nothing is
  lost, so conversion is the obvious intent);
- files with other suffixes in a folder (notes, thumbnails): skipped, with their number logged.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import cv2
import numpy as np

from elsr.errors import ElsrError, from_os_error
from elsr.io.files import atomic_path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
CONVERT_HINT = "pass --convert to turn it into 8-bit RGB, or convert the file yourself"
REEXPORT_HINT = "re-export or remove the file"
MAX_DECODED_PIXELS = 2**30   # OpenCV's own limit on one decoded image (CV_IO_MAX_IMAGE_PIXELS): about 3 GB of RGB
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8"
PNG_PALETTE = 3
CHANNEL_KINDS = {1: "greyscale", 2: "greyscale with alpha", 4: "RGBA"}  # decoded channels -> description
PNG_CHANNELS = {0: 1, 4: 2, 6: 4}  # IHDR colour type -> decoded channels (the unusual ones)
JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Sorted image files under ``folder`` (recursively); errors if missing or empty.

    Other files (notes, thumbnails) are skipped and counted in a log line.
    """
    folder = Path(folder)
    if not folder.exists():
        raise ElsrError("no such file or folder", path=folder, fix="check the path")
    if folder.is_file():
        if folder.suffix.lower() not in IMAGE_SUFFIXES:
            raise ElsrError("not an image file", path=folder, fix=f"use one of {', '.join(IMAGE_SUFFIXES)}")
        return [folder]
    pattern = "**/*" if recursive else "*"
    found = [p for p in folder.glob(pattern) if p.is_file()]
    files = sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES)
    others = sorted(p for p in found if p.suffix.lower() not in IMAGE_SUFFIXES)
    if not files:
        extra = f" (only {len(others)} other file(s), e.g. {others[0].name})" if others else ""
        raise ElsrError(f"folder holds no images{extra}", path=folder,
                        fix=f"point at a folder with {', '.join(IMAGE_SUFFIXES[:4])} files")
    if others:
        log.info("%s: skipped %d non-image file%s (e.g. %s)", folder, len(others), "s" if len(others) > 1 else "",
                 others[0].relative_to(folder))
    return files


def _png_chunks(data: memoryview) -> tuple[str | None, set[str]]:
    """Why a PNG file cannot be right (truncated, damaged, a chunk checksum wrong) or None, and its chunk types."""
    offset, size, kinds = len(PNG_SIGNATURE), len(data), set()
    while offset + 8 <= size:
        length = int.from_bytes(data[offset:offset + 4], "big")
        kind = bytes(data[offset + 4:offset + 8]).decode("latin-1")
        if not kind.isascii() or not kind.isalpha():
            return f"damaged PNG file (no valid chunk at byte {offset})", kinds
        end = offset + 12 + length
        if end > size:
            return f"truncated PNG file ({size} bytes; its {kind} chunk ends at byte {end})", kinds
        if zlib.crc32(data[offset + 4:end - 4]) != int.from_bytes(data[end - 4:end], "big"):
            return f"corrupt PNG file (wrong checksum in its {kind} chunk)", kinds
        kinds.add(kind)
        if kind == "IEND":
            return None, kinds
        offset = end
    return f"truncated PNG file ({size} bytes; it ends before its IEND chunk)", kinds


def _jpeg_problem(data: bytes) -> str | None:
    """A JPEG whose last image data is not followed by an end-of-image marker was cut short."""
    if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        return f"truncated JPEG file ({len(data)} bytes; no end-of-image marker after its image data)"
    return None


def _png_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(height, width, bit depth, colour type) from a PNG's IHDR chunk."""
    if len(data) < 29 or data[12:16] != b"IHDR":
        return None
    return (int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big"), data[24], data[25])


def _jpeg_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(height, width, precision, components) from a JPEG's start-of-frame marker."""
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            offset += 2
            continue
        if marker in (0xD9, 0xDA):
            return None
        length = int.from_bytes(data[offset + 2:offset + 4], "big")
        if marker in JPEG_SOF and offset + 10 <= len(data):
            return (int.from_bytes(data[offset + 5:offset + 7], "big"), int.from_bytes(data[offset + 7:offset + 9], "big"),
                    data[offset + 4], data[offset + 9])
        offset += 2 + length
    return None


def _read_checked(path: Path) -> tuple[bytes, set[str]]:
    """The file's bytes (and its PNG chunk types), after the checks that need no decoding (exists, not
    truncated, not corrupt)."""
    if not path.is_file():
        raise ElsrError("no such image file", path=path, fix="check the path")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise from_os_error(exc, "cannot read image", path) from exc
    if not data:
        raise ElsrError("empty file (0 bytes)", path=path, fix=REEXPORT_HINT)
    problem, chunks = None, set()
    if data.startswith(PNG_SIGNATURE):
        problem, chunks = _png_chunks(memoryview(data))
    elif data.startswith(JPEG_SIGNATURE):
        problem = _jpeg_problem(data)
    if problem:
        raise ElsrError(f"cannot decode image: {problem}", path=path, fix=REEXPORT_HINT)
    return data, chunks


def _describe(img: np.ndarray) -> list[str]:
    """What is unusual about a decoded image (e.g. ["16-bit", "greyscale"]); empty for 8-bit 3-channel."""
    kinds = [f"{img.dtype.itemsize * 8}-bit"] if img.dtype != np.uint8 else []
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels != 3:
        kinds.append(CHANNEL_KINDS.get(channels, f"{channels}-channel"))
    return kinds


def _check_kinds(path: Path, kinds: list[str], convert: bool, converting: bool = False) -> None:
    """Refuse an unusual image unless ``convert``; ``converting``: log that it is being converted."""
    if not kinds:
        return
    if not convert:
        raise ElsrError(f"{' '.join(kinds)} image, expected 8-bit RGB", path=path, fix=CONVERT_HINT)
    if converting:
        log.warning("%s: %s image converted to 8-bit RGB", path, " ".join(kinds))


def to_rgb8(img: np.ndarray) -> np.ndarray:
    """Convert a decoded BGR/grey/BGRA image of any bit depth to HWC uint8 RGB."""
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float64) / 257.0).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(np.round(img.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels in (1, 2):
        img = np.repeat(img[:, :, :1], 3, axis=2)
    elif channels == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(img[:, :, 2::-1])


def _header_facts(data: bytes, chunks: set[str]) -> tuple[int, int, list[str]] | None:
    """(height, width, what is unusual) from a PNG's or JPEG's header; None for other formats."""
    if data.startswith(PNG_SIGNATURE) and (header := _png_header(data)):
        height, width, depth, colour = header
        if colour in (2, PNG_PALETTE) and "tRNS" in chunks:  # transparency: decoded with an alpha channel
            colour = 6
        kinds = [*(["16-bit"] if depth == 16 else []),
                 *([CHANNEL_KINDS[PNG_CHANNELS[colour]]] if colour in PNG_CHANNELS else [])]
        return height, width, kinds
    if data.startswith(JPEG_SIGNATURE) and (header := _jpeg_header(data)):
        height, width, precision, components = header
        kinds = [*([f"{precision}-bit"] if precision > 8 else []), *(["greyscale"] if components == 1 else [])]
        return height, width, kinds
    return None


def read_image(path: str | Path, convert: bool = False) -> np.ndarray:
    """Read an image as HWC uint8 RGB.

    Greyscale, RGBA and 16-bit files are refused unless ``convert`` is true, in which case
    grey is replicated to RGB, alpha is dropped and 16-bit is scaled to 8-bit (with a log line).
    Palette PNGs are converted to RGB (with a log line); truncated and corrupt files are refused.
    """
    path = Path(path)
    data, chunks = _read_checked(path)
    facts = _header_facts(data, chunks)  # the file's own description (OpenCV decodes grey+alpha as BGRA)
    if facts:
        check_decodable(facts[0], facts[1], path)
    img = _decode(data, path)
    _check_kinds(path, facts[2] if facts else _describe(img), convert, converting=True)
    header = _png_header(data) if data.startswith(PNG_SIGNATURE) else None
    if header and header[3] == PNG_PALETTE and img.ndim == 3 and img.shape[2] == 3:
        log.warning("%s: palette image converted to RGB", path)
    return to_rgb8(img)


def check_decodable(height: int, width: int, path: str | Path) -> None:
    """Refuse, before decoding, an image whose header claims more pixels than one decoded image may have."""
    if height * width > MAX_DECODED_PIXELS:
        raise ElsrError(f"image is {width}x{height} pixels, more than the {MAX_DECODED_PIXELS:,} one decoded image "
                        "may have", path=path, fix="crop or downscale it first")


def _decode(data: bytes, path: Path) -> np.ndarray:
    """OpenCV's decoding of ``data``; one line naming the file where OpenCV fails or refuses it."""
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:   # its own limits (size, allocation), asserted in C++
        reason = " ".join(str(exc).split())[-160:]
        raise ElsrError(f"cannot decode image ({reason})", path=path, fix=REEXPORT_HINT) from exc
    if img is None:
        raise ElsrError("cannot decode image (corrupt, truncated or not an image)", path=path, fix=REEXPORT_HINT)
    return img


def probe_image(path: str | Path, convert: bool = False) -> tuple[int, int]:
    """(height, width) of an image, refusing what :func:`read_image` would refuse.

    PNG and JPEG files are checked without decoding (structure, size, bit depth, colour type), so a
    folder can be checked before any output is written; other formats are decoded.
    """
    path = Path(path)
    data, chunks = _read_checked(path)
    if facts := _header_facts(data, chunks):
        _check_kinds(path, facts[2], convert)
        return facts[0], facts[1]
    return read_image(path, convert).shape[:2]


def check_min_size(height: int, width: int, min_side: int, path: str | Path, fix: str, what: str = "image") -> None:
    """Refuse an image smaller than ``min_side`` pixels a side (e.g. the model's receptive field)."""
    if min(height, width) < min_side:
        raise ElsrError(f"{what} is {width}x{height} pixels, smaller than the model's {min_side}x{min_side} "
                        "receptive field", path=path, fix=fix)


def write_image(path: str | Path, img: np.ndarray) -> None:
    """Write an HWC uint8 RGB image atomically (format from the suffix, PNG by default)."""
    path = Path(path)
    suffix = path.suffix.lower() if path.suffix.lower() in IMAGE_SUFFIXES else ".png"
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(img[:, :, ::-1]))
    if not ok:
        raise ElsrError("could not encode image", path=path, fix="use a .png output path")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a Python file: a full disk raises
        handle.write(buf.tobytes())


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop height and width down to multiples of ``scale`` (top-left anchored, as BasicSR)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]
