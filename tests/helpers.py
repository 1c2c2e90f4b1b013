"""Small builders shared by the tests."""

from __future__ import annotations

from pathlib import Path

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
