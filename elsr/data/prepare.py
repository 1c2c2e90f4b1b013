"""HDF5 patch files (``elsr prepare``): aligned HR/LR training patches from images, frame folders or videos.

Inputs are image folders (searched recursively), frame folders such as REDS
``train_sharp/000/00000000.png`` (optionally with the official ``train_sharp_bicubic/X4`` LR
frames, ``--reds-lr``) and video files. Every HR image is mod-cropped, its LR image(s) are made
once per whole image, and aligned patches are cut with a sliding window. The file is written in
batches to a temporary path that is renamed into place only when complete.

Memory is bounded whatever the number of inputs: frames are read one at a time, and patches are
copied into one preallocated buffer of at most ``BUFFER_BYTES`` that is appended to the file when
full.

File layout (the training reader depends on it): ``hr`` (N, P, P, 3) uint8 NHWC RGB,
``lr_x{s}`` (N, P/s, P/s, 3) per scale, ``lr`` a hard link to the first scale's LR dataset,
plus the file attributes written by :func:`_write_attributes`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
from tqdm import tqdm

from elsr.data.bicubic import downscale
from elsr.errors import ElsrError
from elsr.io.files import atomic_path, check_free_space, human_bytes, refuse_overwriting_inputs
from elsr.io.images import IMAGE_SUFFIXES, mod_crop, read_image
from elsr.io.kinds import HDF5_SUFFIXES
from elsr.io.video import VIDEO_SUFFIXES, video_frames, video_info
from elsr.version import __version__

log = logging.getLogger(__name__)

ALLOWED_SCALES = (2, 3, 4)
COMPRESSIONS = ("none", "gzip")
REDS_SCALE = 4
MAX_PATCH = 2048  # HR pixels: one such patch is 12 MB, and training cuts far smaller ones (48-64 px at x4)
BATCH_PATCHES = 256  # at most this many patches buffered in memory before each append to the file
BUFFER_BYTES = 64 * 2**20  # ... and at most this many bytes of them (HR plus every LR scale)
# Room kept free on the disk beside each append, for what HDF5 writes when it closes the file (chunk index,
# heaps, superblock: grows with the chunks, one per patch): HDF5 meeting a full disk leaves its library in a
# state that can crash the process at exit, so the writer stops with one line before the disk is full.
METADATA_ROOM = 4 * 2**20
METADATA_SHARE = 0.02
PROGRESS_LOG_S = 60.0  # without a terminal (batch jobs), a progress line with the ETA this often
FORMAT_NAME = "elsr-patches"
FORMAT_VERSION = 1


@dataclass
class PrepareConfig:
    """Options of ``elsr prepare``; sizes are in HR pixels."""

    sources: list[Path]
    out: Path
    scales: tuple[int, ...] = (4,)
    patch_size: int = 128
    stride: int = 64
    reds_lr: Path | None = None
    frame_step: int = 1  # keep every n-th frame of video files
    compression: str = "none"
    convert: bool = False  # passed to read_image
    overwrite: bool = False


@dataclass(frozen=True)
class _Input:
    """One image or video file to read; ``root`` is the source folder it was found under."""

    path: Path
    root: Path
    is_video: bool


@dataclass
class _Frame:
    """One HR image, with its official LR image when ``--reds-lr`` is used."""

    label: str
    hr: np.ndarray
    official_lr: np.ndarray | None = None


@dataclass
class _Stats:
    images: int = 0
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- validation


def _validate(cfg: PrepareConfig) -> PrepareConfig:
    """Check the options; returns a copy with Path fields and de-duplicated scales."""
    if not cfg.sources:
        raise ElsrError("no input given", fix="name at least one image folder, frame folder or video")
    scales = tuple(dict.fromkeys(int(s) for s in cfg.scales))
    bad = [s for s in scales if s not in ALLOWED_SCALES]
    if not scales or bad:
        raise ElsrError(f"unsupported scale(s) {bad or list(scales)}",
                        fix=f"use scales from {', '.join(map(str, ALLOWED_SCALES))}")
    if cfg.patch_size > MAX_PATCH:
        raise ElsrError(f"patch size {cfg.patch_size} is above {MAX_PATCH} pixels", fix="train on smaller patches")
    for name, value in (("patch size", cfg.patch_size), ("stride", cfg.stride)):
        if value <= 0:
            raise ElsrError(f"{name} must be positive, got {value}", fix=f"pass a positive {name}")
        bad = [s for s in scales if value % s]
        if bad:
            raise ElsrError(f"{name} {value} is not divisible by scale(s) {bad}",
                            fix=f"use a {name} that is a multiple of {math.lcm(*scales)}")
    if cfg.frame_step < 1:
        raise ElsrError(f"frame step must be at least 1, got {cfg.frame_step}", fix="pass --frame-step 1 or more")
    if cfg.compression not in COMPRESSIONS:
        raise ElsrError(f"unknown compression {cfg.compression!r}", fix=f"use one of {', '.join(COMPRESSIONS)}")
    reds_lr = None if cfg.reds_lr is None else Path(cfg.reds_lr)
    if reds_lr is not None:
        if scales != (REDS_SCALE,):
            raise ElsrError(f"--reds-lr gives x4 LR frames only, but scales {list(scales)} were asked",
                            fix="pass --scales 4 with --reds-lr")
        if not reds_lr.is_dir():
            raise ElsrError("REDS LR folder not found", path=reds_lr,
                            fix="point --reds-lr at train_sharp_bicubic/X4")
    return replace(cfg, sources=[Path(s) for s in cfg.sources], out=Path(cfg.out), scales=scales,
                   reds_lr=reds_lr)


def _check_output(cfg: PrepareConfig) -> None:
    """The HDF5 file to write: not a folder, not an input, a suffix training reads it by, new unless overwrite."""
    out = cfg.out
    if out.is_dir():
        raise ElsrError("output is a folder", path=out, fix="give a file name such as train.h5")
    refuse_overwriting_inputs([out], [*cfg.sources, cfg.reds_lr])
    if out.suffix.lower() not in HDF5_SUFFIXES:
        raise ElsrError(f"prepare writes HDF5 files, not {out.suffix or 'suffix-less'} ones", path=out,
                        fix=f"name it {' or '.join('*' + s for s in HDF5_SUFFIXES)}, as elsr train reads it")
    if out.exists() and not cfg.overwrite:
        raise ElsrError("output file already exists", path=out, fix="pass --overwrite")


# ---------------------------------------------------------------- inputs


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def _gather(sources: list[Path]) -> list[_Input]:
    """Image and video files named by ``sources`` (folders searched recursively, sorted)."""
    inputs: list[_Input] = []
    for source in sources:
        if not source.exists():
            raise ElsrError("no such file or folder", path=source, fix="check the path")
        if source.is_file():
            kind = _kind(source)
            if kind is None:
                raise ElsrError("unsupported file type", path=source,
                                fix=f"use images ({', '.join(IMAGE_SUFFIXES)}) or videos ({', '.join(VIDEO_SUFFIXES)})")
            inputs.append(_Input(source, source.parent, kind == "video"))
            continue
        files = sorted(p for p in source.rglob("*") if p.is_file() and _kind(p))
        if not files:
            raise ElsrError("folder holds no images or videos", path=source,
                            fix="point at a folder of .png/.jpg images, frames or videos")
        inputs.extend(_Input(p, source, _kind(p) == "video") for p in files)
    return inputs


def _reds_partner(item: _Input, reds_lr: Path) -> Path:
    """The official LR frame of an HR frame: same path relative to the LR folder."""
    candidates = [reds_lr / item.path.relative_to(item.root), reds_lr / item.path.parent.name / item.path.name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ElsrError("HR frame has no official LR frame", path=item.path,
                    fix=f"expected {candidates[0]}; check --reds-lr or remove the frame")


def _reds_pairs(inputs: list[_Input], reds_lr: Path) -> dict[Path, Path]:
    """Map every HR frame to its LR frame, failing early on the first one missing."""
    videos = [i.path for i in inputs if i.is_video]
    if videos:
        raise ElsrError("video files cannot be used with --reds-lr", path=videos[0],
                        fix="give REDS frame folders, or drop --reds-lr")
    return {item.path: _reds_partner(item, reds_lr) for item in inputs}


def _video_frames(path: Path, step: int) -> Iterator[_Frame]:
    """Every ``step``-th frame of a video as RGB; an unreadable video is an error."""
    for index, rgb in video_frames(path, step):
        yield _Frame(f"{path}#{index}", rgb)


def _estimate_frames(inputs: list[_Input], step: int) -> int:
    """Number of frames to process, for the progress bar (video lengths are container estimates)."""
    total = 0
    for item in inputs:
        if item.is_video:
            total += math.ceil(video_info(item.path).frames / step)
        else:
            total += 1
    return total


def _read_pair(hr_path: Path, lr_path: Path, convert: bool) -> _Frame:
    """An HR frame and its official x4 LR frame, which must be exactly a quarter of the size."""
    hr = mod_crop(read_image(hr_path, convert), REDS_SCALE)
    lr = read_image(lr_path, convert)
    want = (hr.shape[0] // REDS_SCALE, hr.shape[1] // REDS_SCALE)
    if lr.shape[:2] != want:
        raise ElsrError(f"official LR frame is {lr.shape[0]}x{lr.shape[1]}, expected {want[0]}x{want[1]} "
                        f"(a quarter of its HR frame {hr_path})", path=lr_path,
                        fix="check that --reds-lr is the X4 folder of the same clips")
    return _Frame(str(hr_path), hr, lr)


def _frames(inputs: list[_Input], cfg: PrepareConfig, pairs: dict[Path, Path] | None) -> Iterator[_Frame]:
    """All HR frames in input order, one at a time."""
    for item in inputs:
        if item.is_video:
            yield from _video_frames(item.path, cfg.frame_step)
        elif pairs is not None:
            yield _read_pair(item.path, pairs[item.path], cfg.convert)
        else:
            yield _Frame(str(item.path), read_image(item.path, cfg.convert))


# ---------------------------------------------------------------- patches


def _positions(height: int, width: int, patch: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of the sliding window, row by row (no extra border-aligned window)."""
    return [(y, x) for y in range(0, height - patch + 1, stride) for x in range(0, width - patch + 1, stride)]


def _lr_images(hr: np.ndarray, official_lr: np.ndarray | None, scales: tuple[int, ...]) -> dict[int, np.ndarray]:
    """The LR image for each scale, made once per whole image (or the official x4 one)."""
    if official_lr is not None:
        return {REDS_SCALE: official_lr}
    return {s: downscale(hr, s) for s in scales}


class _PatchWriter:
    """Appends patches to resizable ``hr`` / ``lr_x{s}`` datasets through one bounded buffer.

    Patches are copied into preallocated arrays (no view keeps a whole frame alive), so the memory
    held is the buffer, whatever the number of frames.
    """

    def __init__(self, h5: h5py.File, patch: int, scales: tuple[int, ...], compression: str,
                 path: Path | None = None):
        self.path = path   # the file being written, whose disk must keep room (None: not checked)
        self.count = 0
        self.queued = 0
        self.scales = scales
        gzip = "gzip" if compression == "gzip" else None
        sizes = {"hr": patch, **{f"lr_x{s}": patch // s for s in scales}}
        self.datasets = {
            name: h5.create_dataset(name, shape=(0, p, p, 3), maxshape=(None, p, p, 3), dtype=np.uint8,
                                    chunks=(1, p, p, 3), compression=gzip)
            for name, p in sizes.items()
        }
        self.patch_bytes = sum(3 * p * p for p in sizes.values())
        self.capacity = max(1, min(BATCH_PATCHES, BUFFER_BYTES // self.patch_bytes))
        self.buffers = {name: np.empty((self.capacity, p, p, 3), np.uint8) for name, p in sizes.items()}

    def add_image(self, hr: np.ndarray, lrs: dict[int, np.ndarray], patch: int, stride: int) -> int:
        """Cut and queue all aligned patches of one image; returns how many."""
        positions = _positions(hr.shape[0], hr.shape[1], patch, stride)
        for y, x in positions:
            self.buffers["hr"][self.queued] = hr[y:y + patch, x:x + patch]
            for s, lr in lrs.items():
                ly, lx, lp = y // s, x // s, patch // s
                self.buffers[f"lr_x{s}"][self.queued] = lr[ly:ly + lp, lx:lx + lp]
            self.queued += 1
            if self.queued == self.capacity:
                self.flush()
        return len(positions)

    @property
    def total(self) -> int:
        """Patches written plus patches queued."""
        return self.count + self.queued

    def _check_room(self, adding: int) -> None:
        if self.path is None:
            return
        needed = adding + METADATA_ROOM + int(METADATA_SHARE * (self.bytes_written + adding))
        check_free_space(self.path, needed, f"appending {self.queued} patches to the {self.count} written")

    @property
    def bytes_written(self) -> int:
        return self.count * self.patch_bytes

    def flush(self) -> None:
        """Append the queued patches to the file (after checking the disk has room for them)."""
        n = self.queued
        if not n:
            return
        self._check_room(n * self.patch_bytes)
        for name, dataset in self.datasets.items():
            dataset.resize(self.count + n, axis=0)
            dataset[self.count:self.count + n] = self.buffers[name][:n]
        self.count += n
        self.queued = 0


# ---------------------------------------------------------------- file


def _write_attributes(h5: h5py.File, cfg: PrepareConfig, num_patches: int, num_images: int) -> None:
    attrs = h5.attrs
    attrs["format"] = FORMAT_NAME
    attrs["format_version"] = FORMAT_VERSION
    attrs["scales"] = np.array(cfg.scales, dtype=np.int64)
    attrs["patch_size"] = cfg.patch_size
    attrs["stride"] = cfg.stride
    attrs["layout"] = "NHWC"
    attrs["channel_order"] = "RGB"
    attrs["sources"] = json.dumps([str(s) for s in cfg.sources])
    attrs["degradation"] = "reds-official-bicubic-x4" if cfg.reds_lr else "matlab-bicubic-antialias"
    attrs["num_patches"] = num_patches
    attrs["num_images"] = num_images
    attrs["created_by"] = f"elsr prepare {__version__}"


class _ProgressLog:
    """A log line with rate and ETA every ``PROGRESS_LOG_S`` seconds, for runs without a terminal
    (SLURM / Kubernetes logs), where tqdm's bar is hidden."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.started = self.last = time.monotonic()

    def update(self, done: int, writer: _PatchWriter) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < PROGRESS_LOG_S:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        eta = (self.total - done) / rate if rate > 0 and self.total >= done else 0
        log.info("prepare: %d/%d images (%.1f%%), %.2f images/s, %d patches, %s written, ETA %s", done,
                 self.total, 100 * done / max(self.total, 1), rate, writer.total,
                 human_bytes(writer.bytes_written), _duration(eta))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _fill(h5: h5py.File, cfg: PrepareConfig, inputs: list[_Input], pairs: dict[Path, Path] | None) -> _Stats:
    """Stream every frame's patches into ``h5``; returns the counts."""
    writer = _PatchWriter(h5, cfg.patch_size, cfg.scales, cfg.compression, cfg.out)
    stats = _Stats()
    crop = math.lcm(*cfg.scales)
    total = _estimate_frames(inputs, cfg.frame_step)
    with tqdm(total=total, unit="img", desc="prepare", disable=None) as bar:
        progress = _ProgressLog(total, enabled=bar.disable)
        for done, frame in enumerate(_frames(inputs, cfg, pairs), start=1):
            bar.update(1)
            progress.update(done, writer)
            hr = mod_crop(frame.hr, crop)
            if min(hr.shape[:2]) < cfg.patch_size:
                stats.skipped += 1
                if len(stats.skipped_examples) < 3:
                    stats.skipped_examples.append(f"{frame.label} ({frame.hr.shape[0]}x{frame.hr.shape[1]})")
                continue
            writer.add_image(hr, _lr_images(hr, frame.official_lr, cfg.scales), cfg.patch_size, cfg.stride)
            stats.images += 1
            bar.set_postfix(patches=writer.total, refresh=False)
    writer.flush()
    if writer.count == 0:
        raise ElsrError(f"no patches written: all {stats.skipped} image(s) are smaller than the "
                        f"{cfg.patch_size}x{cfg.patch_size} patch", path=cfg.sources[0],
                        fix="pass a smaller --patch-size")
    h5["lr"] = h5[f"lr_x{cfg.scales[0]}"]  # hard link: readers of the classic lr/hr format
    _write_attributes(h5, cfg, writer.count, stats.images)
    return stats


def prepare(cfg: PrepareConfig) -> dict:
    """Build the patch file ``cfg.out``; returns num_patches, num_images, skipped and bytes."""
    cfg = _validate(cfg)
    _check_output(cfg)
    inputs = _gather(cfg.sources)
    pairs = _reds_pairs(inputs, cfg.reds_lr) if cfg.reds_lr else None
    with atomic_path(cfg.out) as tmp:
        with h5py.File(tmp, "w") as h5:
            stats = _fill(h5, cfg, inputs, pairs)
            num_patches = int(h5["hr"].shape[0])
    size = cfg.out.stat().st_size
    if stats.skipped:
        log.info("skipped %d image(s) smaller than the %d-pixel patch, e.g. %s", stats.skipped,
                 cfg.patch_size, ", ".join(stats.skipped_examples))
    log.info("wrote %s: %d patches from %d images, %d skipped, %s", cfg.out, num_patches, stats.images,
             stats.skipped, human_bytes(size))
    return {"out": str(cfg.out), "num_patches": num_patches, "num_images": stats.images,
            "skipped": stats.skipped, "bytes": size}
