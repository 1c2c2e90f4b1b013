"""Video mode: decode frames with OpenCV, super-resolve them, encode an mp4; fps end to end and for the model."""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from elsr.errors import ElsrError
from elsr.imageio import IMAGE_SUFFIXES, list_images

from elsr.inference import array_to_image, image_to_array

from .runners import Runner

CODEC = "mp4v"
OUTPUT_FPS = 30.0
WARMUP_CALLS = 2


def decode_frames(source: Path, limit: int = 0) -> Iterator[np.ndarray]:
    """BGR uint8 frames of a folder of images (sorted by name) or of a video file, decoded lazily."""
    count = 0
    if source.is_dir() or source.suffix.lower() in IMAGE_SUFFIXES:
        for path in list_images(source, recursive=False):
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                raise ElsrError("OpenCV cannot decode this frame", path=path)
            yield frame
            count += 1
            if count == limit:
                return
        return
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ElsrError("OpenCV cannot open this video", path=source, fix="pass a video file or a folder of frames")
    try:
        while limit == 0 or count < limit:
            ok, frame = capture.read()
            if not ok:
                break
            yield frame
            count += 1
    finally:
        capture.release()


def run_video(source: Path, runner: Runner, limit: int = 0) -> dict:
    """Frames per second end to end (decode, super-resolve, mp4 encode), of super-resolution (uint8 frame in and
    out) and of the model alone (its input in, its output fetched to the host).

    The first frame is decoded and super-resolved WARMUP_CALLS times before the clock starts.
    """
    model_s = sr_s = 0.0
    frames, writer, shape = 0, None, None
    decoded = decode_frames(source, limit)
    first = next(decoded, None)
    if first is None:
        raise ElsrError("no frames decoded", path=source)
    for _ in range(WARMUP_CALLS):  # untimed: lazy initialisation, torch.compile for this frame size
        runner.upscale(cv2.cvtColor(first, cv2.COLOR_BGR2RGB))
    with tempfile.TemporaryDirectory(prefix="elsr-bench-video-") as tmp:
        out = Path(tmp) / "sr.mp4"
        start = time.perf_counter()
        try:
            for bgr in itertools.chain([first], decoded):
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                t0 = time.perf_counter()
                x = image_to_array(rgb)
                t1 = time.perf_counter()
                y = runner.fetch(runner.forward(runner.prepare(x)))
                t2 = time.perf_counter()
                sr = array_to_image(y)
                model_s += t2 - t1
                sr_s += time.perf_counter() - t0
                if writer is None:
                    shape = (rgb.shape[1], rgb.shape[0], sr.shape[1], sr.shape[0])
                    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*CODEC), OUTPUT_FPS, shape[2:])
                    if not writer.isOpened():
                        raise ElsrError(f"OpenCV cannot encode {CODEC} mp4 here")
                writer.write(cv2.cvtColor(sr, cv2.COLOR_RGB2BGR))
                frames += 1
        finally:
            if writer is not None:
                writer.release()
        total_s = time.perf_counter() - start
        size = out.stat().st_size if out.exists() else 0
    return {"source": str(source), "frames": frames, "scale": shape[2] // shape[0],
            "input_size": f"{shape[0]}x{shape[1]}", "output_size": f"{shape[2]}x{shape[3]}",
            "codec": CODEC, "output_bytes": size, "end_to_end_s": total_s, "sr_s": sr_s, "model_s": model_s,
            "end_to_end_fps": frames / total_s, "sr_fps": frames / sr_s, "model_fps": frames / model_s}
