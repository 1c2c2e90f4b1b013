"""``python -m elsr.benchmarks.large_image``: upscale a big image under a memory limit, and check the tiles.

Makes a ``size`` input (default 4000x3000) from a scikit-image photo, runs ``elsr upscale
--max-memory MB`` on it in a child process - inside a cgroup with that hard memory limit when
this machine lets us create one (cgroup v1 or v2 memory controller, usually as root), else
unconstrained - and reports the child's peak resident memory, the cgroup's peak usage and the
wall time. Then it checks that the tiled output equals an untiled run on a crop (away from the
crop's own borders, where the crop lacks context).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# elsr (and with it PyTorch) is imported only after the measured run: the child is forked from this
# process, and its peak resident memory counts what it inherited before exec.
CGROUP_ROOTS = (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup"))


def make_input(path: str, width: int, height: int, seed: int = 0) -> None:
    """A photo (scikit-image's astronaut) resized to width x height, with mild noise for detail."""
    import cv2
    from skimage import data

    from elsr.io.images import write_image

    photo = cv2.resize(data.astronaut(), (width, height), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(seed).normal(0, 3, photo.shape)
    write_image(path, np.clip(photo + noise, 0, 255).astype(np.uint8))


def _cgroup(limit_bytes: int) -> tuple[Path, str] | None:
    """A fresh memory cgroup with a hard limit (v1 or v2), or None when we may not make one."""
    for root in CGROUP_ROOTS:
        v1 = (root / "memory.limit_in_bytes").exists() or root.name == "memory"
        v2 = (root / "cgroup.controllers").exists() and "memory" in (root / "cgroup.controllers").read_text()
        if not (v1 or v2):
            continue
        group = root / f"elsr-bench-{uuid.uuid4().hex[:8]}"
        try:
            group.mkdir()
            limit_file = "memory.limit_in_bytes" if v1 else "memory.max"
            (group / limit_file).write_text(str(limit_bytes))
            return group, ("memory.max_usage_in_bytes" if v1 else "memory.peak")
        except OSError:
            if group.exists():
                group.rmdir()
    return None


def run_limited(command: list[str], limit_mb: float) -> dict:
    """Run ``command``; inside a memory cgroup of ``limit_mb`` when possible. Peak memory and time."""
    cgroup = _cgroup(int(limit_mb * 2**20))
    enter = f"echo $$ > {cgroup[0] / 'cgroup.procs'} && " if cgroup else ""
    started = time.perf_counter()
    proc = subprocess.Popen(["bash", "-c", enter + 'exec "$@"', "bash", *command],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = {"command": " ".join(command), "exit_code": proc.returncode,
              "seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
              "hard_limit_mb": limit_mb if cgroup else None, "output": proc.stdout.read().strip()[-500:]}
    if cgroup:
        peak_file = cgroup[0] / cgroup[1]
        if peak_file.exists():
            result["cgroup_peak_mb"] = round(int(peak_file.read_text()) / 2**20, 1)
        cgroup[0].rmdir()
    return result


@dataclass
class LargeImageConfig:
    width: int = 4000
    height: int = 3000
    max_memory_mb: float = 1024          # the memory limit, and elsr upscale's --max-memory
    model: str | None = None             # model file or bundled name (default: elsr upscale's)
    tile: int | None = None              # LR tile side (default: elsr upscale's choice from the budget)
    crop: int = 600                      # side of the crop checked against an untiled run


def run_large_image(cfg: LargeImageConfig) -> dict:
    """Upscale a generated ``width`` x ``height`` image under the memory limit; peak memory, time, and the tiled
    output against an untiled run on a crop."""
    width, height = cfg.width, cfg.height
    elsr = [sys.executable, "-m", "elsr", "upscale", "--no-progress"] + (["--model", cfg.model] if cfg.model else [])
    with tempfile.TemporaryDirectory(prefix="elsr-large-") as tmp:
        folder = Path(tmp)
        subprocess.run([sys.executable, "-c", "import sys; from elsr.benchmarks.large_image import make_input; "
                        "make_input(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))",
                        str(folder / "input.png"), str(width), str(height)], check=True)
        result = run_limited([*elsr, "--input", str(folder / "input.png"), "--output", str(folder / "big.png"),
                              "--max-memory", str(cfg.max_memory_mb),
                              *(["--tile", str(cfg.tile)] if cfg.tile else [])], cfg.max_memory_mb)
        result["input"] = f"{width}x{height}"
        if result["exit_code"] == 0:
            result.update(_tiled_vs_untiled(folder, elsr, width, height, cfg.crop))
    result["parent_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def _tiled_vs_untiled(folder: Path, elsr: list[str], width: int, height: int, side: int) -> dict:
    """The output size, and the tiled output against an untiled run on a crop in the middle (away from the
    crop's borders). elsr is imported only here, after the measured run (see CGROUP_ROOTS)."""
    from elsr.io.images import read_image, write_image
    from elsr.model.network import RECEPTIVE_RADIUS

    big = read_image(folder / "big.png")
    scale = big.shape[0] // height
    y0, x0 = height // 2 - side // 2, width // 2 - side // 2
    write_image(folder / "crop.png", read_image(folder / "input.png")[y0:y0 + side, x0:x0 + side])
    subprocess.run([*elsr, "--input", str(folder / "crop.png"), "--output", str(folder / "crop_sr.png"),
                    "--tile", "0"], check=True, capture_output=True)
    untiled = read_image(folder / "crop_sr.png")
    m = RECEPTIVE_RADIUS * scale
    tiled = big[y0 * scale: (y0 + side) * scale, x0 * scale: (x0 + side) * scale]
    diff = np.abs(tiled[m:-m, m:-m].astype(int) - untiled[m:-m, m:-m].astype(int))
    return {"output_size": f"{big.shape[1]}x{big.shape[0]}",
            "tiled_vs_untiled": {"max_abs": int(diff.max()), "pixels_differing": int((diff > 0).sum()),
                                 "pixels": int(diff.size)}}
