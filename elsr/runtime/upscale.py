"""Upscaling files (``elsr upscale``): super-resolve an image, a folder of images or frames, or a video.

Frames are streamed (read, super-resolved and written one at a time); a large image is processed
in overlapping tiles; ``--compare`` writes bicubic and the model side by side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from elsr.data import bicubic
from elsr.errors import ElsrError
from elsr.io.images import IMAGE_SUFFIXES, check_min_size, list_images, probe_image, read_image, write_image
from elsr.io.pngstream import png_writer
from elsr.io.video import DEFAULT_FPS, FOURCC, VIDEO_SUFFIXES, is_video, video_frames, video_info, video_writer
from elsr.model.network import MIN_LR_SIDE
from elsr.runtime.base import require_upscaling
from elsr.runtime.loaders import load_upscaler
from elsr.runtime.tiling import auto_tile, upscale_bands

TOO_SMALL_FIX = f"upscale images of at least {MIN_LR_SIDE}x{MIN_LR_SIDE} pixels; enlarge it with bicubic first"


@dataclass
class UpscaleConfig:
    model: Path
    input: Path
    output: Path
    device: str = "auto"
    convert: bool = False
    overwrite: bool = False
    compare: bool = False       # bicubic | model side by side
    tile: int = -1              # LR tile side; 0: never tile; -1: from max_memory_mb and the frame width
    max_memory_mb: float = 1024
    fps: float = DEFAULT_FPS    # for videos made from frame folders
    progress: bool = True


def _frames(cfg: UpscaleConfig) -> tuple[Iterator[tuple[str, np.ndarray]], int, float]:
    """(name, RGB frame) pairs of the input, their count and frame rate.

    Every image is checked first (readable, 8-bit RGB or --convert, not smaller than the model's
    receptive field), so a bad file in a folder stops the run before any output is written.
    """
    if cfg.input.is_file() and is_video(cfg.input):
        info = video_info(cfg.input)
        check_min_size(info.height, info.width, MIN_LR_SIDE, cfg.input, TOO_SMALL_FIX, what="its frame")
        frames = ((f"{index:08d}.png", rgb) for index, rgb in video_frames(cfg.input))
        return frames, info.frames, info.fps
    files = list_images(cfg.input)
    for path in files:
        check_min_size(*probe_image(path, cfg.convert), MIN_LR_SIDE, path, TOO_SMALL_FIX)
    root = cfg.input if cfg.input.is_dir() else cfg.input.parent
    names = [f.relative_to(root).with_suffix(".png").as_posix() for f in files]
    return ((name, read_image(f, cfg.convert)) for name, f in zip(names, files)), len(files), cfg.fps


def _sink(cfg: UpscaleConfig) -> str:
    """Where frames go: one image, a folder of PNGs, or a video (created on the first frame)."""
    out = cfg.output
    suffix = out.suffix.lower()
    single_image = cfg.input.is_file() and not is_video(cfg.input)
    if suffix in FOURCC:
        return "video"
    if suffix in VIDEO_SUFFIXES:
        raise ElsrError(f"cannot write {suffix} videos", path=out, fix=f"use one of {', '.join(FOURCC)}")
    if single_image and not out.is_dir():
        if suffix and suffix not in IMAGE_SUFFIXES:
            raise ElsrError(f"cannot write {suffix} images", path=out,
                            fix=f"name the output .png, or use one of {', '.join(IMAGE_SUFFIXES[1:])}")
        return "image"
    if out.exists() and not out.is_dir():
        raise ElsrError("output must be a folder (or a video file) for this input", path=out)
    return "folder"


def upscale_files(cfg: UpscaleConfig) -> list[Path]:
    """Super-resolve the input; returns the files written."""
    upscaler = load_upscaler(cfg.model, device=cfg.device)
    scale = require_upscaling(upscaler)
    if not cfg.input.exists():
        raise ElsrError("no such file or folder", path=cfg.input, fix="check --input")
    kind = _sink(cfg)
    taken = cfg.output.exists() and (kind != "folder" or any(cfg.output.iterdir()))
    if taken and not cfg.overwrite:
        raise ElsrError("output exists" if kind != "folder" else "output folder is not empty", path=cfg.output,
                        fix="pass --overwrite or choose another --output")
    frames, count, fps = _frames(cfg)

    def bands(lr: np.ndarray) -> Iterator[np.ndarray]:
        """The output frame as row bands (bicubic | model with --compare), tiled to fit the memory budget."""
        tile = cfg.tile if cfg.tile >= 0 else auto_tile(cfg.max_memory_mb, lr.shape[1], scale, 1 + cfg.compare)
        sr = upscale_bands(upscaler, lr, scale, tile)
        if not cfg.compare:
            return sr
        bicubic_bands = upscale_bands(lambda x: bicubic.upscale(x, scale), lr, scale, tile)
        return (np.concatenate([b, m], axis=1) for b, m in zip(bicubic_bands, sr))

    def render(lr: np.ndarray) -> np.ndarray:
        return np.concatenate(list(bands(lr)))

    def save(dst: Path, lr: np.ndarray) -> None:
        """PNGs are written band by band, so a huge output never sits in memory whole."""
        if dst.suffix.lower() not in ("", ".png"):
            write_image(dst, render(lr))
            return
        width = lr.shape[1] * scale * (1 + cfg.compare)
        with png_writer(dst, width, lr.shape[0] * scale) as write:
            for band in bands(lr):
                write(band)

    bar = tqdm(total=count or None, desc="upscale", unit="frame", disable=None if cfg.progress and count > 1 else True)
    written: list[Path] = []
    started = time.perf_counter()
    try:
        if kind == "video":
            out = render(next(frames)[1])
            with video_writer(cfg.output, fps, out.shape[1], out.shape[0]) as write:
                write(out)
                bar.update()
                for _, lr in frames:
                    write(render(lr))
                    bar.update()
            written.append(cfg.output)
        else:
            for name, lr in frames:
                dst = cfg.output if kind == "image" else cfg.output / name
                save(dst, lr)
                written.append(dst)
                bar.update()
    finally:
        bar.close()
    frames_done = bar.n
    if frames_done > 1:
        print(f"{frames_done} frames in {time.perf_counter() - started:.1f} s "
              f"({frames_done / (time.perf_counter() - started):.1f} fps)")
    return written
