"""Reading and writing images as HWC uint8 RGB arrays, with clear errors for unusual files."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from .errors import ElsrError
from .fileio import atomic_path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
CONVERT_HINT = "pass --convert to turn it into 8-bit RGB, or convert the file yourself"


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Sorted image files under ``folder`` (recursively); errors if missing or empty."""
    folder = Path(folder)
    if not folder.exists():
        raise ElsrError("no such file or folder", path=folder, fix="check the path")
    if folder.is_file():
        if folder.suffix.lower() not in IMAGE_SUFFIXES:
            raise ElsrError("not an image file", path=folder, fix=f"use one of {', '.join(IMAGE_SUFFIXES)}")
        return [folder]
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ElsrError("folder holds no images", path=folder,
                        fix=f"point at a folder with {', '.join(IMAGE_SUFFIXES[:4])} files")
    return files


def _describe(img: np.ndarray) -> str | None:
    """What is unusual about a decoded image, or None for 8-bit 3-channel."""
    problems = []
    if img.dtype != np.uint8:
        problems.append(f"{img.dtype.itemsize * 8}-bit")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels == 1:
        problems.append("greyscale")
    elif channels == 2:
        problems.append("greyscale with alpha")
    elif channels == 4:
        problems.append("RGBA")
    elif channels != 3:
        problems.append(f"{channels}-channel")
    return " ".join(problems) + " image" if problems else None


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


def read_image(path: str | Path, convert: bool = False) -> np.ndarray:
    """Read an image as HWC uint8 RGB.

    Greyscale, RGBA and 16-bit files are refused unless ``convert`` is true, in which case
    grey is replicated to RGB, alpha is dropped and 16-bit is scaled to 8-bit (with a log line).
    """
    path = Path(path)
    if not path.is_file():
        raise ElsrError("no such image file", path=path, fix="check the path")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise ElsrError("cannot decode image (corrupt, truncated or not an image)", path=path,
                        fix="re-export or remove the file")
    unusual = _describe(img)
    if unusual:
        if not convert:
            raise ElsrError(f"{unusual}, expected 8-bit RGB", path=path, fix=CONVERT_HINT)
        log.warning("%s: %s converted to 8-bit RGB", path, unusual)
    return to_rgb8(img)


def write_image(path: str | Path, img: np.ndarray) -> None:
    """Write an HWC uint8 RGB image atomically (format from the suffix, PNG by default)."""
    path = Path(path)
    suffix = path.suffix.lower() if path.suffix.lower() in IMAGE_SUFFIXES else ".png"
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(img[:, :, ::-1]))
    if not ok:
        raise ElsrError("could not encode image", path=path, fix="use a .png output path")
    with atomic_path(path) as tmp:
        buf.tofile(tmp)


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop height and width down to multiples of ``scale`` (top-left anchored, as BasicSR)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]
