"""Training curves as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from elsr.io.files import atomic_path  # noqa: E402


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _by_stage(rows: Sequence[dict]):
    """(stage name, colour, its rows, their global epochs) for each stage in order."""
    colours = plt.get_cmap("tab10")
    stages = list(dict.fromkeys(r["stage_name"] for r in rows))
    for i, stage in enumerate(stages):
        part = [r for r in rows if r["stage_name"] == stage]
        yield stage, colours(i % 10), part, [r["global_epoch"] for r in part]


def plot_history(rows: Sequence[dict], out_dir: str | Path) -> list[Path]:
    """loss.png (training loss per epoch) and psnr.png (validation PSNR-Y and its gain over bicubic)."""
    out_dir = Path(out_dir)
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for stage, colour, part, x in _by_stage(rows):
        ax.plot(x, [r["loss"] for r in part], "o-", ms=3, color=colour, label=stage)
    ax.set(yscale="log", xlabel="epoch (all stages)", ylabel="training loss", title="Training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    loss = _save(fig, out_dir / "loss.png")

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for stage, colour, part, x in _by_stage(rows):
        top.plot(x, [r["psnr_y"] for r in part], "o-", ms=3, color=colour, label=stage)
        top.plot(x, [r["bicubic_psnr_y"] for r in part], "--", color=colour, alpha=0.6)
        bottom.plot(x, [r["psnr_y"] - r["bicubic_psnr_y"] for r in part], "o-", ms=3, color=colour, label=stage)
    top.set(ylabel="validation PSNR, Y (dB)", title="Validation PSNR (dashed: bicubic at the stage's scale)")
    bottom.axhline(0, color="grey", lw=0.8)
    bottom.set(xlabel="epoch (all stages)", ylabel="gain over bicubic (dB)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(fontsize=8)
    return [loss, _save(fig, out_dir / "psnr.png")]
