"""Training curves as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .fileio import atomic_path  # noqa: E402


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_history(rows: Sequence[dict], out_dir: str | Path) -> list[Path]:
    """loss.png (training loss per epoch) and psnr.png (validation PSNR-Y vs bicubic), stages coloured."""
    out_dir = Path(out_dir)
    if not rows:
        return []
    stages = list(dict.fromkeys(r["stage_name"] for r in rows))
    colours = plt.get_cmap("tab10")
    paths = []
    for key, ylabel, name, log_y in (("loss", "training loss", "loss.png", True),
                                     ("psnr_y", "validation PSNR, Y (dB)", "psnr.png", False)):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for i, stage in enumerate(stages):
            part = [r for r in rows if r["stage_name"] == stage]
            x = [r["global_epoch"] for r in part]
            ax.plot(x, [r[key] for r in part], "o-", ms=3, color=colours(i % 10), label=stage)
            if key == "psnr_y":
                ax.plot(x, [r["bicubic_psnr_y"] for r in part], "--", color=colours(i % 10), alpha=0.6)
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel("epoch (all stages)")
        ax.set_ylabel(ylabel)
        title = "Training loss" if key == "loss" else "Validation PSNR (dashed: bicubic at the stage's scale)"
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        _save(fig, out_dir / name)
        paths.append(out_dir / name)
    return paths
