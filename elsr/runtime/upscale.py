"""Upscaling files (``elsr upscale``): super-resolve an image, a folder of images or frames, or a video.

Every input takes one code path, :func:`upscale_stream`: frames are read (decoded) in one thread,
super-resolved in a second and written (PNG, or converted to yuv420p and encoded) in the caller's, with
bounded queues between them (:mod:`elsr.runtime.pipeline`), so memory stays flat for any length and the
slowest stage - at 720p out, the video encoder - sets the pace. A video keeps its audio and subtitle
streams (copied unchanged), timestamps, rotation and duration (:mod:`elsr.io.video`). A large image is
processed in overlapping tiles and its PNG written band by band; ``--compare`` writes bicubic and the
model side by side.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2
import numpy as np
from tqdm import tqdm

from elsr.data import bicubic
from elsr.errors import ElsrError
from elsr.io.files import check_free_space, human_bytes, refuse_overwriting_inputs, staged_folder
from elsr.io.images import IMAGE_SUFFIXES, check_min_size, list_images, probe_image, read_image, write_image
from elsr.io.pngstream import png_writer
from elsr.io.video import (CONTAINERS, DEFAULT_FPS, WRITABLE, EncodeSettings, Frame, OutputVideo,
                           VideoReader, VideoWriter, container_for, is_video, to_yuv420p, video_writer)
from elsr.model.devices import usable_cores
from elsr.model.network import MIN_LR_SIDE
from elsr.pretrained import VIDEO_MODELS, bundled_name, pretrained
from elsr.runtime.base import Upscaler, require_upscaling
from elsr.runtime.loaders import fastest_bundled, load_upscaler, runtime_for
from elsr.runtime.pipeline import DEFAULT_DEPTH, PipelineStats, run_pipeline
from elsr.runtime.tiling import RUNTIME_MB, auto_tile, image_budget, tile_bytes, upscale_bands

log = logging.getLogger(__name__)

TOO_SMALL_FIX = f"upscale images of at least {MIN_LR_SIDE}x{MIN_LR_SIDE} pixels; enlarge it with bicubic first"
STAGES = ("decode", "super-resolve", "encode")
IN_FLIGHT = 2 * DEFAULT_DEPTH + 3   # frames a run holds at most: two full queues, and one in each of the three stages
# The least room an output takes on disk, as a share of its raw RGB bytes (stronger compression is rare for photos
# and frames; BMP and PPM are raw): what is refused before any work when the disk has less free.
LEAST_SHARE = {".png": 1 / 10, ".tif": 1 / 10, ".tiff": 1 / 10, ".jpg": 1 / 50, ".jpeg": 1 / 50, ".webp": 1 / 50}
VIDEO_LEAST_BITS = 0.01             # bits per output pixel of the smallest video we write (H.264 CRF 23: ~0.05)


@dataclass
class UpscaleConfig:
    input: Path
    output: Path
    model: Path | None = None   # None: the bundled x4 INT8 model; for videos the fastest installed one (VIDEO_MODELS)
    device: str = "auto"
    convert: bool = False
    overwrite: bool = False
    compare: bool = False       # bicubic | model side by side
    tile: int = -1              # LR tile side; 0: never tile; -1: from max_memory_mb and the frame width
    max_memory_mb: float = 1024
    fps: float = DEFAULT_FPS    # for videos made from frame folders
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    threads: int | None = None  # the model's threads; None: video_model_threads() for a video, else the runtime's
    progress: bool = True


@dataclass
class Source:
    """The frames of the input, checked before any output is written."""

    items: Iterator[Frame | av.Packet]   # frames in display order; a video's copied packets between them
    count: int                           # frames (a video's: the container's count or estimate; 0: unknown)
    width: int
    height: int
    names: list[str] | None = None       # output names of an image folder's frames; None: 00000000.png, ...
    video: VideoReader | None = None
    paths: list[Path] = field(default_factory=list)   # the image files read (none for a video)
    pixels: int = 0                      # LR pixels of all frames together (0: unknown)
    largest: Path | None = None          # the image with the most pixels (of size ``width`` x ``height``)

    def name(self, index: int) -> str:
        return self.names[index] if self.names is not None else f"{index:08d}.png"

    def close(self) -> None:
        if self.video is not None:
            self.video.close()


def _first_frames(items: Iterator[Frame | av.Packet], limit: int) -> Iterator[Frame | av.Packet]:
    """``items`` up to the ``limit``-th frame (0: all)."""
    frames = 0
    for item in items:
        yield item
        frames += isinstance(item, Frame)
        if frames == limit > 0:
            return


def open_source(path: Path, convert: bool = False, copy_streams: bool = True, same_size: bool = False,
                limit: int = 0) -> Source:
    """An image, a folder of images/frames (sorted by name) or a video file, its first ``limit`` frames (0: all).
    Every image is checked first (readable, 8-bit RGB or ``convert``, not smaller than the model's receptive
    field; with ``same_size``, all of one size), so a bad file stops the run before any output is written."""
    if path.is_file() and is_video(path):
        reader = VideoReader(path)
        info = reader.info
        try:
            check_min_size(info.height, info.width, MIN_LR_SIDE, path, TOO_SMALL_FIX, what="its frame")
        except ElsrError:
            reader.close()
            raise
        count = min(info.frames, limit) if limit and info.frames else limit or info.frames
        return Source(_first_frames(reader.items(copy_streams), limit), count, info.width, info.height, video=reader,
                      pixels=count * info.width * info.height, largest=path)
    files = list_images(path)[:limit or None]
    sizes = [probe_image(f, convert) for f in files]
    for file, size in zip(files, sizes):
        check_min_size(*size, MIN_LR_SIDE, file, TOO_SMALL_FIX)
        if same_size and size != sizes[0]:
            raise ElsrError(f"image is {size[1]}x{size[0]}, the first ({files[0].name}) {sizes[0][1]}x{sizes[0][0]}: "
                            "a video's frames must have one size", path=file, fix="resize or crop the frames alike")
    root = path if path.is_dir() else path.parent
    names = [f.relative_to(root).with_suffix(".png").as_posix() for f in files]
    frames = (Frame(index, read_image(f, convert)) for index, f in enumerate(files))
    largest = max(range(len(files)), key=lambda i: sizes[i][0] * sizes[i][1])
    return Source(frames, len(files), sizes[largest][1], sizes[largest][0], names, paths=files,
                  pixels=sum(height * width for height, width in sizes), largest=files[largest])


def output_kind(input_path: Path, output: Path) -> str:
    """Where frames go: 'video' (a container we write), 'image' (one image in, one out) or 'folder' (PNGs)."""
    suffix = output.suffix.lower()
    if suffix in CONTAINERS:
        return "video"
    single_image = input_path.is_file() and not is_video(input_path)
    if single_image and not output.is_dir():
        if suffix and suffix not in IMAGE_SUFFIXES:
            raise ElsrError(f"cannot write {suffix} images", path=output,
                            fix=f"name the output .png, or use one of {', '.join(IMAGE_SUFFIXES[1:])}")
        return "image"
    if output.exists() and not output.is_dir():
        raise ElsrError(f"output must be a folder (or a video: {WRITABLE}) for this input", path=output)
    if suffix in IMAGE_SUFFIXES and not output.is_dir():   # a folder of images given one image's name
        raise ElsrError(f"is an image file name, but --input {input_path.name} holds several pictures", path=output,
                        fix=f"give a folder name without a suffix for PNGs, or a video name ({WRITABLE})")
    if suffix and not output.is_dir():
        container_for(output)  # out.gif, out.avi, out.txt: not a video we write; not silently a folder either
    return "folder"


def label_halves(band: np.ndarray, labels: tuple[str, str], top: int = 0) -> np.ndarray:
    """Write each label in the top-left corner of its half of a side-by-side picture (white on a dark box);
    ``band`` holds the picture's rows from ``top`` on, so a picture written band by band gets the same pixels."""
    half = band.shape[1] // 2
    font_scale = max(0.4, half / 1000)
    thickness = max(1, round(font_scale * 1.5))
    for x0, text in zip((0, half), labels):
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        pad = max(2, h // 3)
        if top > h + base + 2 * pad:
            continue
        cv2.rectangle(band, (x0, -top), (x0 + min(w + 2 * pad, half - 1), h + base + 2 * pad - top), (0, 0, 0),
                      cv2.FILLED)
        cv2.putText(band, text, (x0 + pad, h + pad - top), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255),
                    thickness, cv2.LINE_AA)
    return band


class Renderer:
    """The super-resolved frame (bicubic beside it with ``compare``) as row bands, tiled to fit the memory budget.

    The model is called under a lock: the bands of a tiled image are computed while they are written, in the
    write stage, and the model's runtime must not run two calls at once.
    """

    def __init__(self, upscaler: Upscaler, compare: bool = False, tile: int = -1, max_memory_mb: float = 1024) -> None:
        self.scale = require_upscaling(upscaler)
        self.upscaler, self.compare, self.tile, self.max_memory_mb = upscaler, compare, tile, max_memory_mb
        self.reserved = 0   # bytes of the budget the frames themselves hold (check_memory), not for tiles
        self._lock = threading.Lock()

    def _model(self, lr: np.ndarray) -> np.ndarray:
        with self._lock:
            return self.upscaler(lr)

    def tile_for_width(self, width: int) -> int:
        """The LR tile side for frames ``width`` pixels wide: --tile, else the largest the budget allows."""
        if self.tile >= 0:
            return self.tile
        return auto_tile(self.max_memory_mb - self.reserved / 2**20, width, self.scale, 1 + self.compare)

    def tile_for(self, lr: np.ndarray) -> int:
        return self.tile_for_width(lr.shape[1])

    def tiled(self, lr: np.ndarray) -> bool:
        return 0 < self.tile_for(lr) < max(lr.shape[:2])

    def bands(self, lr: np.ndarray) -> Iterator[np.ndarray]:
        tile = self.tile_for(lr)
        sr = upscale_bands(self._model, lr, self.scale, tile)
        if not self.compare:
            return sr
        bicubic_bands = upscale_bands(lambda x: bicubic.upscale(x, self.scale), lr, self.scale, tile)
        labels = (f"bicubic x{self.scale}", f"ELSR x{self.scale}: {self.upscaler.name}")
        return self._labelled((np.concatenate([b, m], axis=1) for b, m in zip(bicubic_bands, sr)), labels)

    @staticmethod
    def _labelled(bands: Iterator[np.ndarray], labels: tuple[str, str]) -> Iterator[np.ndarray]:
        top = 0
        for band in bands:
            yield label_halves(band, labels, top)
            top += band.shape[0]

    def frame(self, lr: np.ndarray) -> np.ndarray:
        bands = list(self.bands(lr))
        return bands[0] if len(bands) == 1 else np.concatenate(bands)

    def size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the output for an LR frame of ``width`` x ``height``."""
        return width * self.scale * (1 + self.compare), height * self.scale


@dataclass
class Written:
    """What a run wrote: files, frames, seconds (from the first frame read to the file complete) and where the
    time went."""

    files: list[Path]
    frames: int
    seconds: float
    stats: PipelineStats
    model: str = ""           # which model ran: 'x4-int8 (elsr_x4_int8.onnx, int8 qat, onnxruntime)'

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def upscale_stream(source: Source, renderer: Renderer, sink: VideoWriter | Callable[[int], Path],
                   progress: Callable[[], None] = lambda: None, depth: int = DEFAULT_DEPTH) -> PipelineStats:
    """The one code path of every upscale: read, super-resolve and write at once (see the module's doc).

    ``sink`` is an open video, or gives the image file of each frame index. A video's frames are converted to
    yuv420p in the super-resolution stage; a video's copied packets pass through in file order.
    """
    if isinstance(sink, VideoWriter):
        def transform(item):
            if isinstance(item, Frame):
                return to_yuv420p(renderer.frame(item.rgb), item.pts, item.duration)
            return item

        def write(item) -> None:
            if isinstance(item, av.Packet):
                sink.mux(item)
                return
            sink.write(item)
            progress()
    else:
        def transform(item: Frame):
            bands = renderer.bands(item.rgb)   # a tiled image: computed while written, band by band
            return item, (bands if renderer.tiled(item.rgb) else list(bands))

        def write(item) -> None:
            frame, bands = item
            save_bands(sink(frame.index), bands, *renderer.size(frame.rgb.shape[1], frame.rgb.shape[0]))
            progress()

    return run_pipeline(source.items, transform, write, depth, STAGES)


def upscale_video(source: Source, renderer: Renderer, path: Path, settings: EncodeSettings = EncodeSettings(),
                  fps: float = DEFAULT_FPS, progress: Callable[[], None] = lambda: None) -> PipelineStats:
    """Super-resolve ``source`` into the video ``path``: a video keeps its timestamps, frame rate, rotation and
    copied streams; frames from images are ``fps`` apart."""
    width, height = renderer.size(source.width, source.height)
    info = source.video.info if source.video else None
    spec = OutputVideo(width, height, info.fps if info else fps, info.time_base if info else None, source.video)
    with video_writer(path, spec, settings) as writer:
        return upscale_stream(source, renderer, writer, progress)


def save_bands(path: Path, bands, width: int, height: int) -> None:
    """An image from its row bands: PNG band by band (a huge output never sits in memory whole), else whole."""
    if path.suffix.lower() not in ("", ".png"):
        bands = list(bands)
        write_image(path, bands[0] if len(bands) == 1 else np.concatenate(bands))
        return
    with png_writer(path, width, height) as write:
        for band in bands:
            write(band)


def video_model_threads() -> int:
    """The model's threads beside a video encoder: a quarter of the cores, at least one. The encoder takes the
    rest, and a runtime's idle threads spin: onnxruntime with 2 threads beside libx264 on 2 cores cost 60 CPU ms
    a frame end to end against 41 with 1 thread, and ran at 17 against 24 fps (`elsr bench --video`)."""
    return max(1, usable_cores() // 4)


def describe_model(path: Path, upscaler: Upscaler) -> str:
    """'x4-int8 (elsr_x4_int8.onnx, int8 qat, onnxruntime)' for a bundled model, else the file and the same."""
    name = bundled_name(path)
    detail = f"{upscaler.info().precision}, {runtime_for(Path(path)).name}"
    return f"{name} ({Path(path).name}, {detail})" if name else f"{path} ({detail})"


def default_model(video_job: bool) -> Path:
    """The bundled x4 INT8 model; for a video, the fastest of VIDEO_MODELS that is bundled and runs here."""
    return fastest_bundled(VIDEO_MODELS) if video_job else pretrained()


def check_paths(cfg: UpscaleConfig) -> str:
    """The output kind; ElsrError for a missing input, an output that is the input (by any name) or inside an input
    folder (images there are read back), one that exists."""
    if not cfg.input.exists():
        raise ElsrError("no such file or folder", path=cfg.input, fix="check --input")
    refuse_overwriting_inputs([cfg.output], [cfg.input, cfg.model])
    kind = output_kind(cfg.input, cfg.output)
    if kind != "video":
        refuse_overwriting_inputs([cfg.output], [], [cfg.input])
    taken = cfg.output.exists() and (kind != "folder" or any(cfg.output.iterdir()))
    if taken and not cfg.overwrite:
        raise ElsrError("output exists" if kind != "folder" else "output folder is not empty", path=cfg.output,
                        fix="pass --overwrite or choose another --output")
    return kind


def held_bytes(source: Source, renderer: Renderer, kind: str, suffix: str) -> int:
    """Bytes the frames of a run hold at once besides the tiles' work, for the largest frame: an image's file and
    its decoding for each image read ahead (and a non-PNG output assembled whole); a video's decoded frames and
    yuv420p outputs in the queues, and one output frame assembled whole."""
    lr = source.width * source.height * 3
    width, height = renderer.size(source.width, source.height)
    sr = width * height * 3
    if kind == "video":
        return IN_FLIGHT * (lr + sr // 2) + 2 * sr
    ahead = min(source.count or IN_FLIGHT, IN_FLIGHT)
    file = source.largest.stat().st_size if source.largest and not source.video else 0   # read whole, then decoded
    return ahead * (file + lr) + (2 * sr if kind == "image" and suffix not in ("", ".png") else 0)


def check_memory(cfg: UpscaleConfig, source: Source, renderer: Renderer, kind: str) -> None:
    """Refuse, before any work, a frame that cannot be upscaled within --max-memory (decoded, held whole where it
    is, and the smallest tiles), naming what it needs and what the budget allows; else reserve what it holds."""
    suffix = cfg.output.suffix.lower()
    held = held_bytes(source, renderer, kind, suffix)
    renderer.reserved = held
    tile = renderer.tile_for_width(source.width)
    need = held + tile_bytes(tile, source.height, source.width, renderer.scale, 1 + renderer.compare)
    budget = image_budget(cfg.max_memory_mb)
    if need <= budget:
        return
    fixes = ["raise --max-memory", *(["leave --tile out to tile by the budget"] if cfg.tile >= 0 else []),
             *(["write .png (written band by band)"] if kind == "image" and suffix not in ("", ".png") else []),
             "or downscale the input"]
    raise ElsrError(f"a {source.width}x{source.height} frame needs about {human_bytes(need)} to upscale x"
                    f"{renderer.scale}{' with --tile ' + str(cfg.tile) if cfg.tile >= 0 else ''}, more than the "
                    f"{human_bytes(budget)} that --max-memory {cfg.max_memory_mb:g} MB leaves beside the runtime's "
                    f"{RUNTIME_MB} MB", path=source.largest or cfg.input, fix=", ".join(fixes))


def check_disk(cfg: UpscaleConfig, source: Source, renderer: Renderer, kind: str) -> None:
    """Refuse, before any work, outputs that cannot fit the free disk space even compressed as well as they ever
    are (LEAST_SHARE, VIDEO_LEAST_BITS), naming both figures."""
    raw = source.pixels * renderer.scale ** 2 * 3 * (1 + renderer.compare)
    if kind == "video":
        least = raw / 3 * VIDEO_LEAST_BITS / 8
    else:
        least = raw * LEAST_SHARE.get(cfg.output.suffix.lower() if kind == "image" else ".png", 1.0)
    what = f"the x{renderer.scale} {'video' if kind == 'video' else 'output'} of {source.pixels:,} LR pixels"
    check_free_space(cfg.output, int(least), what)


def check_targets(cfg: UpscaleConfig, source: Source) -> None:
    """No frame written into an output folder lands on an input image (an input folder inside the output one)."""
    inputs = {path.resolve() for path in source.paths}
    for index in range(source.count if inputs else 0):
        target = cfg.output / source.name(index)
        if target.resolve() in inputs:
            raise ElsrError(f"frame {index} would be written over the input image {target}", path=cfg.output,
                            fix="choose an output folder that holds none of the input images")


def upscale_files(cfg: UpscaleConfig) -> Written:
    """Super-resolve the input; returns the files written and the pipeline's figures."""
    kind = check_paths(cfg)
    if kind == "video":
        cfg.encode.resolve(cfg.output)  # a codec the container cannot hold: refused before any work
    files: list[Path] = []
    written_to = cfg.output   # frames into a folder: a temporary one, moved into place when all are written

    def target(index: int) -> Path:
        if kind == "image":
            files.append(cfg.output)
            return cfg.output
        files.append(cfg.output / source.name(index))
        return written_to / source.name(index)

    with contextlib.ExitStack() as stack:
        video_job = kind == "video" or is_video(cfg.input)
        model = cfg.model or default_model(video_job)
        threads = cfg.threads if cfg.threads is not None else video_model_threads() if video_job else 0
        upscaler = load_upscaler(model, device=cfg.device, threads=threads)
        stack.callback(upscaler.close)
        model_line = describe_model(model, upscaler)
        renderer = Renderer(upscaler, cfg.compare, cfg.tile, cfg.max_memory_mb)
        source = open_source(cfg.input, cfg.convert, copy_streams=kind == "video", same_size=kind == "video")
        stack.callback(source.close)
        if kind == "folder":
            check_targets(cfg, source)
        check_memory(cfg, source, renderer, kind)
        check_disk(cfg, source, renderer, kind)
        log.info("upscale: %s with %s", cfg.input, model_line)
        bar = stack.enter_context(tqdm(total=source.count or None, desc="upscale", unit="frame", dynamic_ncols=True,
                                       disable=None if cfg.progress and source.count != 1 else True))
        stack.enter_context(upscaler.active())
        done = [0]

        def progress() -> None:
            done[0] += 1
            bar.update()

        if kind == "folder":
            written_to = stack.enter_context(staged_folder(cfg.output))
        started = time.perf_counter()
        if kind == "video":
            stats = upscale_video(source, renderer, cfg.output, cfg.encode, cfg.fps, progress)
            files.append(cfg.output)
        else:
            stats = upscale_stream(source, renderer, target, progress)
        written = Written(files, done[0], time.perf_counter() - started, stats, model_line)
    if written.frames > 1:
        print(f"{written.frames} frames in {written.seconds:.1f} s ({written.fps:.1f} fps)")
        log.info("time per stage: %s", stats.split())
    return written
