"""Data path at scale: is loading fast enough for training, and does ``elsr prepare`` stay small?

``python -m benchmarks.data_loading throughput --data train.h5`` times, for one training stage:

* loading alone: this rank's batches from the DataLoader (``--workers`` processes, each with its own
  HDF5 handle), nothing else, in samples per second;
* the training step alone: forward, backward and Adam on one batch kept on the device;
* both together, as ``elsr train`` runs them;

and says whether the model waits for data. ``python -m benchmarks.data_loading prepare-memory
--frames 2000`` generates that many 1280x720 frames in REDS's folder layout, runs ``elsr prepare``
on them in a child process, and reports its peak resident memory (sampled along the way, and the
kernel's high-water mark), time per frame and bytes per frame, with the figures extrapolated to
full REDS (24,000 training frames).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REDS_TRAIN_FRAMES = 240 * 100  # train_sharp: 240 clips of 100 frames
FRAMES_PER_CLIP = 100


# ---------------------------------------------------------------- throughput


def _loading_alone(source, args, workers: int) -> dict:
    source.workers = workers
    started = time.perf_counter()
    batches = source.batches(args.scale, args.patch, args.batch, args.iters, (0, 0, workers), uint8=True)
    next(batches)
    first = time.perf_counter() - started
    count = 1
    steady = time.perf_counter()
    for _ in batches:
        count += 1
    seconds = time.perf_counter() - steady
    return {"workers": workers, "first_batch_s": round(first, 3),
            "samples_per_s": round((count - 1) * args.batch / max(seconds, 1e-9), 1)}


def _step(model, optimizer, lr_u8, hr_u8, device, amp):
    import torch

    from elsr.data import to_float
    lr = to_float(lr_u8.to(device, non_blocking=True))
    hr = to_float(hr_u8.to(device, non_blocking=True))
    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        pred = model(lr)
    loss = torch.nn.functional.mse_loss(pred.float(), hr)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()  # as the trainer does: one synchronisation per step


def _model(args, device):
    import torch

    from elsr.model import ELSR, ModelConfig
    torch.manual_seed(0)
    model = ELSR(ModelConfig(scale=args.scale)).to(device).train()
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, torch.optim.Adam(model.parameters(), lr=1e-4)


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


def _training_alone(source, args, device, amp) -> dict:
    model, optimizer = _model(args, device)
    lr_u8, hr_u8 = next(source.batches(args.scale, args.patch, args.batch, 1, (1, 0, 0), uint8=True))
    for _ in range(3):  # warm-up (cuDNN autotuning, allocator)
        _step(model, optimizer, lr_u8, hr_u8, device, amp)
    _sync(device)
    started = time.perf_counter()
    for _ in range(args.iters):
        _step(model, optimizer, lr_u8, hr_u8, device, amp)
    _sync(device)
    return {"samples_per_s": round(args.iters * args.batch / (time.perf_counter() - started), 1)}


def _training_with_loading(source, args, device, amp, workers: int) -> dict:
    source.workers = workers
    model, optimizer = _model(args, device)
    batches = source.batches(args.scale, args.patch, args.batch, args.iters + 3, (2, 0, workers), uint8=True)
    for _ in range(3):
        _step(model, optimizer, *next(batches), device, amp)
    _sync(device)
    started = time.perf_counter()
    for lr_u8, hr_u8 in batches:
        _step(model, optimizer, lr_u8, hr_u8, device, amp)
    _sync(device)
    return {"workers": workers, "samples_per_s": round(args.iters * args.batch / (time.perf_counter() - started), 1)}


def throughput(args) -> dict:
    import torch

    from elsr.data import HDF5Source, open_training_data
    from elsr.inference import resolve_device
    from elsr.training import amp_dtype
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    amp = amp_dtype(args.amp, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    source = open_training_data(args.data, workers=0, pin_memory=device.type == "cuda")
    kind = "HDF5" if isinstance(source, HDF5Source) else "image folder (in memory, read in the training process)"
    worker_counts = args.workers if isinstance(source, HDF5Source) else [0]
    result = {"data": str(args.data), "kind": kind, "device": str(device), "amp": args.amp,
              "torch_threads": torch.get_num_threads(), "cpu_cores": os.cpu_count(), "scale": args.scale,
              "patch": args.patch, "batch": args.batch, "iters": args.iters,
              "loading": [_loading_alone(source, args, w) for w in worker_counts],
              "training_step": _training_alone(source, args, device, amp),
              "training_with_loading": [_training_with_loading(source, args, device, amp, w) for w in worker_counts]}
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


def _throughput_markdown(r: dict) -> str:
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


def prepare_memory(args) -> dict:
    work = Path(args.work)
    frames = work / "frames"
    out = work / "prepared.h5"
    started = time.perf_counter()
    generate_frames(frames, args.frames, args.height, args.width)
    generated = time.perf_counter() - started
    frame_bytes = sum(p.stat().st_size for p in frames.rglob("*.png"))
    command = [sys.executable, "-m", "elsr", "prepare", str(frames), "--out", str(out), "--scales", args.scales,
               "--patch-size", str(args.patch_size), "--stride", str(args.stride), "--overwrite"]
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
    result = {"frames": args.frames, "frame_size": f"{args.width}x{args.height}", "scales": args.scales,
              "patch_size": args.patch_size, "stride": args.stride, "command": " ".join(command[1:]),
              "generate_seconds": round(generated, 1), "png_bytes_per_frame": round(frame_bytes / args.frames),
              "prepare_seconds": round(seconds, 1), "seconds_per_frame": round(seconds / args.frames, 3),
              "peak_rss_mib": round(peak), "rss_mib_over_time": quarters,
              "h5_bytes": size, "h5_bytes_per_frame": round(size / args.frames),
              "reds_train_frames": REDS_TRAIN_FRAMES,
              "reds_h5_gib": round(size / args.frames * REDS_TRAIN_FRAMES / 2**30, 1),
              "reds_prepare_hours": round(seconds / args.frames * REDS_TRAIN_FRAMES / 3600, 1),
              "summary_line": output.strip().splitlines()[-1] if output.strip() else ""}
    if not args.keep_frames:
        shutil.rmtree(frames, ignore_errors=True)
    if not args.keep_h5:
        out.unlink(missing_ok=True)
    return result


# ---------------------------------------------------------------- command line


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.replace(",", " ").split()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_loading", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput", help="samples/s of loading alone, the training step alone, and both")
    t.add_argument("--data", type=Path, required=True, help="an 'elsr prepare' HDF5 file (or an image folder)")
    t.add_argument("--scale", type=int, default=4)
    t.add_argument("--patch", type=int, default=64, help="LR patch size (default 64, the paper schedule's x4 stage)")
    t.add_argument("--batch", type=int, default=64, help="batch size of one process (default 64)")
    t.add_argument("--iters", type=int, default=40, help="timed iterations per measurement (default 40)")
    t.add_argument("--workers", type=_ints, default=[0, 1, 2], help='DataLoader workers to try, e.g. "0,2,4"')
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    t.add_argument("--amp", default="off", choices=("off", "bf16", "fp16"))
    t.add_argument("--channels-last", action="store_true", help="NHWC model, as elsr train does with --amp on CUDA")
    t.add_argument("--threads", type=int, default=0, help="torch threads of the training process (0: default)")
    t.add_argument("--json", type=Path, help="also write the figures here")
    m = sub.add_parser("prepare-memory", help="peak resident memory of 'elsr prepare' on generated 1280x720 frames")
    m.add_argument("--frames", type=int, default=2000)
    m.add_argument("--width", type=int, default=1280)
    m.add_argument("--height", type=int, default=720)
    m.add_argument("--work", type=Path, required=True, help="scratch folder for the frames and the HDF5 file")
    m.add_argument("--scales", default="4,2")
    m.add_argument("--patch-size", type=int, default=512)
    m.add_argument("--stride", type=int, default=256)
    m.add_argument("--keep-frames", action="store_true", help="keep the generated frames (default: deleted)")
    m.add_argument("--keep-h5", action="store_true", help="keep the HDF5 file (default: deleted)")
    m.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.what == "throughput":
        result = throughput(args)
        print(_throughput_markdown(result))
    else:
        result = prepare_memory(args)
        print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
