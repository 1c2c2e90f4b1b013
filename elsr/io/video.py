"""Reading and writing videos frame by frame (OpenCV), RGB uint8 frames, bounded memory."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from elsr.errors import ElsrError
from elsr.io.files import atomic_path

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
FOURCC = {".mp4": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
DEFAULT_FPS = 30.0


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    frames: int      # the container's estimate
    width: int
    height: int


def open_video(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise ElsrError("cannot open video (corrupt or unsupported codec)", path=path,
                        fix="re-encode it (e.g. to H.264 .mp4) or extract its frames to PNG")
    return cap


def video_info(path: Path) -> VideoInfo:
    cap = open_video(path)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
        return VideoInfo(fps if fps and fps > 0 else DEFAULT_FPS, max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0),
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()


def video_frames(path: Path, step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame) for every ``step``-th frame; a video with no readable frame is an error."""
    cap = open_video(path)
    kept = 0
    try:
        index = 0
        while cap.grab():
            if index % step == 0:
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    break
                kept += 1
                yield index, np.ascontiguousarray(bgr[:, :, ::-1])
            index += 1
    finally:
        cap.release()
    if kept == 0:
        raise ElsrError("video has no readable frames (corrupt or unsupported codec)", path=path,
                        fix="re-encode it or extract its frames to PNG")


@contextlib.contextmanager
def video_writer(path: Path, fps: float, width: int, height: int):
    """A function that appends RGB frames to ``path``; the file appears only when complete."""
    suffix = path.suffix.lower()
    if suffix not in FOURCC:
        raise ElsrError(f"cannot write {suffix or 'suffix-less'} video", path=path,
                        fix=f"use one of {', '.join(FOURCC)}")
    with atomic_path(path) as tmp:
        target = tmp.with_suffix(suffix)  # OpenCV picks the container from the suffix
        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*FOURCC[suffix]), fps, (width, height))
        if not writer.isOpened():
            raise ElsrError("OpenCV cannot write this video", path=path, fix="try an .avi output")
        try:
            yield lambda rgb: writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
        except BaseException:
            writer.release()
            target.unlink(missing_ok=True)
            raise
        writer.release()
        if not target.is_file() or target.stat().st_size == 0:  # OpenCV reports no write error (a full disk)
            target.unlink(missing_ok=True)
            raise ElsrError("OpenCV wrote no video data", path=path,
                            fix="check free disk space, or try an .avi output")
        target.replace(tmp)
