"""Small builders shared by the tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch
import yaml

from elsr.model.network import ELSR, ModelConfig


def smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured but smooth HWC uint8 RGB image (random noise, blurred, plus gradients)."""
    noise = rng.random((height, width, 3)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), 2.0)
    blurred = (blurred - blurred.min()) / (np.ptp(blurred) + 1e-6)
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    return np.clip((0.7 * blurred + 0.3 * ramp) * 255, 0, 255).round().astype(np.uint8)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rgb[:, :, ::-1] if rgb.ndim == 3 else rgb)
    return path


def image_folder(root: Path, rng: np.random.Generator, count: int = 3, size: tuple[int, int] = (96, 120)) -> Path:
    for i in range(count):
        write_png(root / f"img{i}.png", smooth_image(rng, *size))
    return root


def nearest_neighbour_elsr(scale: int) -> ELSR:
    """An ELSR whose weights make it an exact nearest-neighbour upscaler (a known reference)."""
    model = ELSR(ModelConfig(scale=scale))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for c in range(3):
            model.head.weight[c, c, 1, 1] = 1.0
            model.tail.weight[c * scale * scale:(c + 1) * scale * scale, c, 1, 1] = 1.0
    return model.eval()


def tiny_schedule(path: Path, epochs: tuple[int, int] = (2, 2), iters: int = 3, lr: float = 0.003) -> Path:
    """A two-stage (x2 scratch -> x4 transfer) schedule that runs in seconds."""
    stages = [
        {"name": "x2", "scale": 2, "patch_size": 8, "batch_size": 4, "loss": "l1", "lr": lr,
         "epochs": epochs[0], "iters_per_epoch": iters, "init": "scratch"},
        {"name": "x4", "scale": 4, "patch_size": 8, "batch_size": 4, "loss": "mse", "lr": lr,
         "epochs": epochs[1], "iters_per_epoch": iters, "init": "transfer",
         "scheduler": {"name": "step", "step_size": 1, "gamma": 0.5}},
    ]
    path.write_text(yaml.safe_dump({"name": "tiny", "seed": 3, "stages": stages}))
    return path


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10) -> Path:
    """An MJPG video of RGB frames (the codec opencv-python-headless always has)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video, RGB."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
    cap.release()
    return frames


def observe_ranges(qmodel, batches: int = 3, size: int = 16, seeded: bool = False):
    """``qmodel`` (a QuantELSR) with its activation ranges observed on ``batches`` random 2 x 3 x size x size batches
    and frozen, in eval mode: what QAT hands over, minus the training. ``seeded``: batch i from its own generator
    seeded i, else from torch's global one."""
    qmodel.train()
    with torch.no_grad():
        for i in range(batches):
            qmodel(torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(i) if seeded else None))
    qmodel.freeze_observers()
    return qmodel.eval()


def flat_frames(count: int, height: int = 24, width: int = 32, step: int = 8) -> list[np.ndarray]:
    """Frames of one grey level each, ``step`` apart: frame i is level 16 + step * i (survives lossy coding)."""
    return [np.full((height, width, 3), 16 + step * i, np.uint8) for i in range(count)]


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 10, pts_ms: list[int] | None = None,
               audio: str | None = None, subtitles: bool = False, rotation: int | None = None,
               fmt: str | None = None) -> Path:
    """A video written with PyAV directly (a reference independent of elsr.io.video): H.264 (VP9 in .webm),
    timestamps in milliseconds (``pts_ms``: a variable frame rate), a tone as ``audio`` (aac, libopus), SubRip
    subtitles, a display rotation."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format=fmt) as out:
        codec = "libvpx-vp9" if path.suffix == ".webm" else "libx264"
        video = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1000),
                               options={"crf": "18", "threads": "1"})   # one thread: the same bytes every time
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = video.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            video.set_display_rotation(rotation)
        sound = out.add_stream(audio, rate=48000, layout="mono") if audio else None
        text = out.add_mux_stream("subrip") if subtitles else None
        if text is not None:
            text.time_base = Fraction(1, 1000)
        times = pts_ms or [round(1000 * i / fps) for i in range(len(frames))]
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = times[i], Fraction(1, 1000)
            frame.duration = (times[i + 1] - times[i]) if i + 1 < len(times) else round(1000 / fps)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        end_ms = times[-1] + round(1000 / fps)
        if sound is not None:
            for start in range(0, end_ms * 48, 960):
                t = (start + np.arange(960)) / 48000
                block = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                                   format="flt", layout="mono")
                block.sample_rate, block.pts, block.time_base = 48000, start, Fraction(1, 48000)
                out.mux(sound.encode(block))
            out.mux(sound.encode())
        for k in range(end_ms // 500 if text is not None else 0):
            packet = av.Packet(f"cue {k}".encode())
            packet.stream, packet.time_base, packet.pts, packet.dts, packet.duration = text, Fraction(1, 1000), \
                500 * k, 500 * k, 400
            out.mux(packet)
    return path


def stream_packets(path: Path, kind: str) -> list[tuple[bytes, int | None, int | None]]:
    """(bytes, pts, duration) of every packet of the first ``kind`` stream (audio, subtitles), in time units."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [(bytes(p), p.pts and float(p.pts * p.time_base), p.duration and float(p.duration * p.time_base))
                for p in container.demux(stream) if p.size]


def decoded_frames(path: Path) -> list[tuple[float, np.ndarray, int]]:
    """(time in seconds, RGB frame, rotation) of every video frame, in display order."""
    with av.open(str(path)) as container:
        return [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24"), f.rotation)
                for f in container.decode(video=0)]


def damage(path: Path, how: str) -> Path:
    """Break a video mid-file: 'truncated' cuts it off at 60%, 'corrupted' overwrites 2,000 bytes at 30%, 50% and
    70% of it (encoders differ slightly across CPUs, so one spot could miss the frame data)."""
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) * 6 // 10]
    else:
        noise = np.random.default_rng(1).integers(0, 256, 2000, np.uint8).tobytes()
        for tenths in (3, 5, 7):
            start = len(data) * tenths // 10
            data[start: start + 2000] = noise
    path.write_bytes(bytes(data))
    return path


def noise_clip(path: Path, count: int = 40) -> Path:
    """A video of random 64x48 frames: big packets, so a damaged byte range hits frame data."""
    rng = np.random.default_rng(0)
    return write_clip(path, [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(count)])


def sound_only(path: Path) -> Path:
    """A file holding one AAC audio stream and no video."""
    with av.open(str(path), "w") as out:
        sound = out.add_stream("aac", rate=48000, layout="mono")
        block = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        block.sample_rate, block.pts = 48000, 0
        out.mux(sound.encode(block))
        out.mux(sound.encode())
    return path
