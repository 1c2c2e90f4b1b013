"""Video mode: decode frames with OpenCV, super-resolve them, encode an mp4; fps end to end and for the model."""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from elsr.errors import ElsrError
from elsr.io.images import IMAGE_SUFFIXES, list_images, read_image
from elsr.io.video import FOURCC, video_frames, video_writer
from elsr.model.inference import array_to_image, image_to_array
from elsr.runtime.base import Upscaler

OUTPUT_FPS = 30.0
WARMUP_CALLS = 2


def decode_frames(source: Path, limit: int = 0) -> Iterator[np.ndarray]:
    """RGB uint8 frames of a folder of images (sorted by name) or of a video file, decoded lazily."""
    if source.is_dir() or source.suffix.lower() in IMAGE_SUFFIXES:
        frames = (read_image(path, convert=True) for path in list_images(source, recursive=False))
    else:
        frames = (rgb for _, rgb in video_frames(source))
    return itertools.islice(frames, limit or None)


def run_video(source: Path, runner: Upscaler, limit: int = 0) -> dict:
    """Frames per second end to end (decode, super-resolve, mp4 encode), of super-resolution (uint8 frame in and
    out) and of the model alone (its input in, its output fetched to the host).

    The first frame is decoded and super-resolved WARMUP_CALLS times before the clock starts.
    """
    model_s = sr_s = 0.0
    frames = 0
    decoded = decode_frames(source, limit)
    first = next(decoded, None)
    if first is None:
        raise ElsrError("no frames decoded", path=source)
    for _ in range(WARMUP_CALLS):  # untimed: lazy initialisation, torch.compile for this frame size
        warm = runner(first)
    with tempfile.TemporaryDirectory(prefix="elsr-bench-video-") as tmp:
        out = Path(tmp) / "sr.mp4"
        start = time.perf_counter()
        with video_writer(out, OUTPUT_FPS, warm.shape[1], warm.shape[0]) as write:
            for rgb in itertools.chain([first], decoded):
                t0 = time.perf_counter()
                x = image_to_array(rgb)
                t1 = time.perf_counter()
                y = runner.fetch(runner.forward(runner.prepare(x)))
                t2 = time.perf_counter()
                sr = array_to_image(y)
                model_s += t2 - t1
                sr_s += time.perf_counter() - t0
                write(sr)
                frames += 1
        total_s = time.perf_counter() - start
        size = out.stat().st_size
    height, width = first.shape[:2]
    return {"source": str(source), "frames": frames, "scale": warm.shape[1] // width,
            "input_size": f"{width}x{height}", "output_size": f"{warm.shape[1]}x{warm.shape[0]}",
            "codec": FOURCC[out.suffix], "output_bytes": size, "end_to_end_s": total_s, "sr_s": sr_s,
            "model_s": model_s, "end_to_end_fps": frames / total_s, "sr_fps": frames / sr_s,
            "model_fps": frames / model_s}
