"""``elsr demo``: the whole promise on a laptop, no download: train, evaluate, look at the pictures.

The built-in data set is made from real photos bundled with scikit-image; two are held out.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .checkpoint import load_model  # noqa: E402
from .degrade import downscale, upscale  # noqa: E402
from .errors import ElsrError  # noqa: E402
from .evaluate import EvalConfig, evaluate, format_table  # noqa: E402
from .fileio import atomic_path, write_text  # noqa: E402
from .imageio import mod_crop, read_image, write_image  # noqa: E402
from .inference import resolve_device, super_resolve  # noqa: E402
from .training import TrainConfig, train  # noqa: E402

log = logging.getLogger(__name__)

TRAIN_PHOTOS = ("astronaut", "rocket", "hubble_deep_field", "retina", "immunohistochemistry")
HELD_OUT_PHOTOS = ("coffee", "chelsea")


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    schedule: str = "quick"
    length: float = 1.0
    device: str = "auto"
    progress: bool = True


def builtin_dataset(folder: Path) -> tuple[Path, Path]:
    """Write scikit-image's bundled photos as PNG: a training folder and a held-out folder."""
    try:
        from skimage import data as photos
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ElsrError("scikit-image is not installed", fix="pip install scikit-image") from exc
    for split, names in (("train", TRAIN_PHOTOS), ("val", HELD_OUT_PHOTOS)):
        for name in names:
            path = folder / split / f"{name}.png"
            if not path.exists():
                write_image(path, np.ascontiguousarray(getattr(photos, name)()[:, :, :3]))
    return folder / "train", folder / "val"


def _zoom_box(hr: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the most detailed size x size window (largest gradient energy)."""
    grey = hr.mean(axis=2)
    energy = np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1]
    best, corner = -1.0, (0, 0)
    step = max(8, size // 4)
    for top in range(0, hr.shape[0] - size, step):
        for left in range(0, hr.shape[1] - size, step):
            value = energy[top: top + size, left: left + size].sum()
            if value > best:
                best, corner = value, (top, left)
    return corner


def comparison_figure(panels: dict[str, np.ndarray], scores: dict[str, str], path: Path) -> None:
    """A row of full images and a row of zoomed crops of the same detailed region."""
    hr = panels["ground truth"]
    size = max(48, min(hr.shape[:2]) // 4)
    top, left = _zoom_box(hr, size)
    fig, axes = plt.subplots(2, len(panels), figsize=(3.2 * len(panels), 6.6))
    for column, (title, image) in enumerate(panels.items()):
        axes[0, column].imshow(image)
        axes[0, column].add_patch(plt.Rectangle((left, top), size, size, fill=False, color="yellow", lw=1.5))
        axes[0, column].set_title(f"{title}\n{scores.get(title, '')}", fontsize=9)
        axes[1, column].imshow(image[top: top + size, left: left + size], interpolation="nearest")
        for row in (0, 1):
            axes[row, column].axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def run_demo(cfg: DemoConfig) -> Path:
    """Train on the built-in photos, evaluate on the held-out ones, write report.md."""
    started = time.perf_counter()
    out = Path(cfg.out)
    train_dir, val_dir = builtin_dataset(out / "data")
    summary = train(TrainConfig(schedule=cfg.schedule, train=train_dir, val=val_dir, out=out / "train",
                                device=cfg.device, resume=True, length=cfg.length, progress=cfg.progress))
    model_path = out / "train" / "model.pt"
    result = evaluate(EvalConfig(model=model_path, data=val_dir, device=cfg.device, progress=False))
    write_text(out / "eval.json", json.dumps(result, indent=2))
    model, _ = load_model(model_path)
    device = resolve_device(cfg.device)
    model.to(device)
    scale = model.scale
    figures = []
    for row in result["images"]:
        hr = mod_crop(read_image(val_dir / row["image"]), scale)
        lr = downscale(hr, scale)
        panels = {"LR (nearest)": np.repeat(np.repeat(lr, scale, 0), scale, 1), "bicubic": upscale(lr, scale),
                  "ELSR FP32": super_resolve(model, lr, device), "ground truth": hr}
        scores = {"bicubic": f"{row['bicubic']['psnr_y']:.2f} dB", "ELSR FP32": f"{row['model']['psnr_y']:.2f} dB"}
        figure = out / f"compare_{Path(row['image']).stem}.png"
        comparison_figure(panels, scores, figure)
        figures.append(figure)
    minutes = (time.perf_counter() - started) / 60
    report = out / "report.md"
    write_text(report, "\n".join([
        "# ELSR demo report", "",
        f"Schedule `{cfg.schedule}` (length x{cfg.length}) on the built-in photos "
        f"({', '.join(TRAIN_PHOTOS)}), evaluated on the held-out {', '.join(HELD_OUT_PHOTOS)}; "
        f"x{scale}, PSNR/SSIM on Y (BT.601) with a {scale}-pixel border, MATLAB-bicubic LR inputs.", "",
        format_table(result), "",
        f"Final model: `{model_path}` ({summary['gain_y_db']:+.2f} dB over bicubic on the held-out images "
        f"at its best epoch). Wall time of this demo: {minutes:.1f} min.", "",
        "## Training curves", "", "![loss](train/loss.png)", "", "![psnr](train/psnr.png)", "",
        "## Comparisons (bottom row: zoom on the most detailed region)", "",
        *[f"![{f.stem}]({f.name})\n" for f in figures],
    ]))
    return report


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default: runs/demo)")
    parser.add_argument("--schedule", default="quick", help="schedule to train (default: quick)")
    parser.add_argument("--length", type=float, default=1.0, help="multiply every stage's epochs (default: 1)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args) -> int:
    report = run_demo(DemoConfig(out=args.out, schedule=args.schedule, length=args.length, device=args.device,
                                 progress=not args.no_progress))
    print(f"demo finished: report {report}, model {report.parent / 'train' / 'model.pt'}, "
          f"curves {report.parent / 'train'}/loss.png and psnr.png, comparisons {report.parent}/compare_*.png")
    return 0
