"""Data path at scale: is loading fast enough for training, and does ``elsr prepare`` stay small?

``python -m elsr.benchmarks.data_loading throughput --data train.h5`` times, for one training stage:

* loading alone: this rank's batches from the DataLoader (``--workers`` processes, each with its own
  HDF5 handle), nothing else, in samples per second;
* the training step alone: forward, backward and Adam on one batch kept on the device;
* both together, as ``elsr train`` runs them;

and says whether the model waits for data. ``python -m elsr.benchmarks.data_loading prepare-memory
--frames 2000`` generates that many 1280x720 frames in REDS's folder layout, runs ``elsr prepare``
on them in a child process, and reports its peak resident memory (sampled along the way, and the
kernel's high-water mark), time per frame and bytes per frame, with the figures extrapolated to
full REDS (24,000 training frames).

PyTorch and the rest of elsr are imported inside the functions that use them: the prepare child is
forked from this process, and its peak resident memory counts what this process held when it forked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REDS_TRAIN_FRAMES = 240 * 100  # train_sharp: 240 clips of 100 frames
FRAMES_PER_CLIP = 100


@dataclass
class ThroughputConfig:
    data: Path                                  # an 'elsr prepare' HDF5 file (or an image folder)
    scale: int = 4
    patch: int = 64                             # LR patch size (the paper schedule's x4 stage)
    batch: int = 64                             # batch size of one process
    iters: int = 40                             # timed iterations per measurement
    workers: list[int] = field(default_factory=lambda: [0, 1, 2])   # DataLoader workers to try
    device: str = "auto"
    amp: str = "off"
    channels_last: bool = False                 # NHWC model, as elsr train does with --amp on CUDA
    threads: int = 0                            # torch threads of the training process (0: default)


@dataclass
class PrepareMemoryConfig:
    work: Path                                  # scratch folder for the frames and the HDF5 file
    frames: int = 2000
    width: int = 1280
    height: int = 720
    scales: str = "4,2"
    patch_size: int = 512
    stride: int = 256
    keep_frames: bool = False
    keep_h5: bool = False


# ---------------------------------------------------------------- throughput


def _loading_alone(source, cfg, workers: int) -> dict:
    source.workers = workers
    started = time.perf_counter()
    batches = source.batches(cfg.scale, cfg.patch, cfg.batch, cfg.iters, (0, 0, workers), uint8=True)
    next(batches)
    first = time.perf_counter() - started
    count = 1
    steady = time.perf_counter()
    for _ in batches:
        count += 1
    seconds = time.perf_counter() - steady
    return {"workers": workers, "first_batch_s": round(first, 3),
            "samples_per_s": round((count - 1) * cfg.batch / max(seconds, 1e-9), 1)}


def _step(model, optimizer, lr_u8, hr_u8, device, amp):
    import torch

    from elsr.data.datasets import to_float
    lr = to_float(lr_u8.to(device, non_blocking=True))
    hr = to_float(hr_u8.to(device, non_blocking=True))
    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        pred = model(lr)
    loss = torch.nn.functional.mse_loss(pred.float(), hr)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()  # as the trainer does: one synchronisation per step


def _model(cfg, device):
    import torch

    from elsr.model.network import ELSR, ModelConfig
    torch.manual_seed(0)
    model = ELSR(ModelConfig(scale=cfg.scale)).to(device).train()
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, torch.optim.Adam(model.parameters(), lr=1e-4)


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


def _training_alone(source, cfg, device, amp) -> dict:
    model, optimizer = _model(cfg, device)
    lr_u8, hr_u8 = next(source.batches(cfg.scale, cfg.patch, cfg.batch, 1, (1, 0, 0), uint8=True))
    for _ in range(3):  # warm-up (cuDNN autotuning, allocator)
        _step(model, optimizer, lr_u8, hr_u8, device, amp)
    _sync(device)
    started = time.perf_counter()
    for _ in range(cfg.iters):
        _step(model, optimizer, lr_u8, hr_u8, device, amp)
    _sync(device)
    return {"samples_per_s": round(cfg.iters * cfg.batch / (time.perf_counter() - started), 1)}


def _training_with_loading(source, cfg, device, amp, workers: int) -> dict:
    source.workers = workers
    model, optimizer = _model(cfg, device)
    batches = source.batches(cfg.scale, cfg.patch, cfg.batch, cfg.iters + 3, (2, 0, workers), uint8=True)
    for _ in range(3):
        _step(model, optimizer, *next(batches), device, amp)
    _sync(device)
    started = time.perf_counter()
    for lr_u8, hr_u8 in batches:
        _step(model, optimizer, lr_u8, hr_u8, device, amp)
    _sync(device)
    return {"workers": workers, "samples_per_s": round(cfg.iters * cfg.batch / (time.perf_counter() - started), 1)}


def throughput(cfg: ThroughputConfig) -> dict:
    import torch

    from elsr.data.datasets import HDF5Source, open_training_data
    from elsr.model.inference import resolve_device
    from elsr.train.trainer import amp_dtype
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    amp = amp_dtype(cfg.amp, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    source = open_training_data(cfg.data, workers=0, pin_memory=device.type == "cuda")
    kind = "HDF5" if isinstance(source, HDF5Source) else "image folder (in memory, read in the training process)"
    worker_counts = cfg.workers if isinstance(source, HDF5Source) else [0]
    result = {"data": str(cfg.data), "kind": kind, "device": str(device), "amp": cfg.amp,
              "torch_threads": torch.get_num_threads(), "cpu_cores": os.cpu_count(), "scale": cfg.scale,
              "patch": cfg.patch, "batch": cfg.batch, "iters": cfg.iters,
              "loading": [_loading_alone(source, cfg, w) for w in worker_counts],
              "training_step": _training_alone(source, cfg, device, amp),
              "training_with_loading": [_training_with_loading(source, cfg, device, amp, w) for w in worker_counts]}
    train_rate = result["training_step"]["samples_per_s"]
    best = max(result["loading"], key=lambda r: r["samples_per_s"])
    per_worker = max(r["samples_per_s"] / max(r["workers"], 1) for r in result["loading"])
    result["verdict"] = (
        f"loading alone reaches {best['samples_per_s']:.0f} samples/s ({best['workers']} workers), "
        f"{best['samples_per_s'] / train_rate:.1f}x the training step's {train_rate:.0f} samples/s: "
        + ("the model does not wait for data" if best["samples_per_s"] >= 1.2 * train_rate
           else "loading is the bottleneck, add workers or CPU cores")
        + f"; at about {per_worker:.0f} samples/s per worker, keeping up with the step needs "
          f"{int(np.ceil(train_rate / max(per_worker, 1e-9)))} worker(s) (plus headroom)")
    return result


def throughput_markdown(r: dict) -> str:
    lines = [f"data: {r['data']} ({r['kind']}); device {r['device']}, amp {r['amp']}, {r['torch_threads']} torch "
             f"thread(s), {r['cpu_cores']} CPU cores; x{r['scale']}, {r['patch']}px LR patches, batch {r['batch']}, "
             f"{r['iters']} iterations", "",
             "| what | workers | samples/s | first batch |", "|---|---:|---:|---:|"]
    for row in r["loading"]:
        lines.append(f"| loading alone | {row['workers']} | {row['samples_per_s']:.0f} | {row['first_batch_s']:.2f} s |")
    lines.append(f"| training step alone (batch on the device) | - | {r['training_step']['samples_per_s']:.0f} | - |")
    for row in r["training_with_loading"]:
        lines.append(f"| training with loading | {row['workers']} | {row['samples_per_s']:.0f} | - |")
    return "\n".join(lines + ["", r["verdict"]])


# ---------------------------------------------------------------- prepare memory


def generate_frames(folder: Path, count: int, height: int, width: int, seed: int = 0) -> Path:
    """``count`` smooth, textured RGB frames as PNG in REDS's layout (clip folders of 100 frames).

    Frames already there are kept, so a second run reuses them.
    """
    import cv2
    rng = np.random.default_rng(seed)
    base = None
    for i in range(count):
        path = folder / f"{i // FRAMES_PER_CLIP:03d}" / f"{i % FRAMES_PER_CLIP:08d}.png"
        if i % FRAMES_PER_CLIP == 0:  # one textured picture per clip, moving within it like a video
            noise = rng.random((height + 64, width + 64, 3)).astype(np.float32)
            blurred = cv2.GaussianBlur(noise, (0, 0), 3.0)
            base = np.clip((blurred - blurred.min()) / (np.ptp(blurred) + 1e-6) * 255, 0, 255).astype(np.uint8)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        dy, dx = (i % FRAMES_PER_CLIP) % 64, (3 * i) % 64
        cv2.imwrite(str(path), np.ascontiguousarray(base[dy:dy + height, dx:dx + width]),
                    [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return folder


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def prepare_memory(cfg: PrepareMemoryConfig) -> dict:
    work = Path(cfg.work)
    frames = work / "frames"
    out = work / "prepared.h5"
    started = time.perf_counter()
    generate_frames(frames, cfg.frames, cfg.height, cfg.width)
    generated = time.perf_counter() - started
    frame_bytes = sum(p.stat().st_size for p in frames.rglob("*.png"))
    command = [sys.executable, "-m", "elsr", "prepare", str(frames), "--out", str(out), "--scales", cfg.scales,
               "--patch-size", str(cfg.patch_size), "--stride", str(cfg.stride), "--overwrite"]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples = []  # (seconds, resident MiB) every half second
    while proc.poll() is None:
        rss = _rss_mib(proc.pid)
        if rss is not None:
            samples.append((time.perf_counter() - started, rss))
        time.sleep(0.5)
    seconds = time.perf_counter() - started
    output = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"elsr prepare failed ({proc.returncode}):\n{output}")
    import resource
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    size = out.stat().st_size
    quarters = {f"{q}%": round(samples[min(len(samples) - 1, int(len(samples) * q / 100))][1])
                for q in (10, 25, 50, 75, 100)} if samples else {}
    result = {"frames": cfg.frames, "frame_size": f"{cfg.width}x{cfg.height}", "scales": cfg.scales,
              "patch_size": cfg.patch_size, "stride": cfg.stride, "command": " ".join(command[1:]),
              "generate_seconds": round(generated, 1), "png_bytes_per_frame": round(frame_bytes / cfg.frames),
              "prepare_seconds": round(seconds, 1), "seconds_per_frame": round(seconds / cfg.frames, 3),
              "peak_rss_mib": round(peak), "rss_mib_over_time": quarters,
              "h5_bytes": size, "h5_bytes_per_frame": round(size / cfg.frames),
              "reds_train_frames": REDS_TRAIN_FRAMES,
              "reds_h5_gib": round(size / cfg.frames * REDS_TRAIN_FRAMES / 2**30, 1),
              "reds_prepare_hours": round(seconds / cfg.frames * REDS_TRAIN_FRAMES / 3600, 1),
              "summary_line": output.strip().splitlines()[-1] if output.strip() else ""}
    if not cfg.keep_frames:
        shutil.rmtree(frames, ignore_errors=True)
    if not cfg.keep_h5:
        out.unlink(missing_ok=True)
    return result
