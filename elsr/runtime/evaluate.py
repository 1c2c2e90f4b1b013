"""Evaluation (``elsr eval``): per-image and mean PSNR/SSIM (RGB and Y) of any model file and of bicubic."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from elsr.data.bicubic import downscale, upscale
from elsr.data.metrics import METRIC_KEYS, image_metrics, mean_metrics
from elsr.errors import ElsrError
from elsr.io.images import check_min_size, list_images, mod_crop, read_image
from elsr.model.network import MIN_LR_SIDE
from elsr.runtime.base import require_upscaling
from elsr.runtime.loaders import load_upscaler


@dataclass
class EvalConfig:
    model: Path
    data: Path                  # folder of HR images
    scale: int | None = None    # must match the model; default: the model's scale
    lr: Path | None = None      # optional folder of given LR images ({stem}.png or {stem}x{scale}.png)
    device: str = "auto"
    convert: bool = False
    progress: bool = True


def find_lr(folder: Path, stem: str, scale: int) -> Path:
    for name in (f"{stem}x{scale}", stem):
        for candidate in sorted(folder.glob(f"{name}.*")):
            return candidate
    raise ElsrError(f"no LR image for {stem!r}", path=folder, fix=f"expected {stem}x{scale}.png or {stem}.png")


def evaluate(cfg: EvalConfig) -> dict:
    """Scores of bicubic and the model on every image of ``cfg.data``, plus their means."""
    upscaler = load_upscaler(cfg.model, cfg.scale, cfg.device)
    scale = require_upscaling(upscaler)
    rows = []
    files = list_images(cfg.data)
    for path in tqdm(files, desc="eval", unit="img", disable=None if cfg.progress else True, leave=False):
        hr = mod_crop(read_image(path, cfg.convert), scale)
        if cfg.lr is None:
            lr = downscale(hr, scale)
        else:
            lr_path = find_lr(cfg.lr, path.stem, scale)
            lr = read_image(lr_path, cfg.convert)
            if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
                raise ElsrError(f"LR {lr.shape[1]}x{lr.shape[0]} does not match HR {hr.shape[1]}x{hr.shape[0]} "
                                f"at x{scale}", path=lr_path)
        check_min_size(*lr.shape[:2], MIN_LR_SIDE, path, what=f"its x{scale} LR image",
                       fix=f"evaluate on images of at least {MIN_LR_SIDE * scale}x{MIN_LR_SIDE * scale} pixels, "
                           "or remove it")
        rows.append({"image": path.name,
                     "bicubic": image_metrics(upscale(lr, scale), hr, scale),
                     "model": image_metrics(upscaler(lr), hr, scale)})
    mean = {name: mean_metrics([r[name] for r in rows]) for name in ("bicubic", "model")}
    return {"model": str(cfg.model), "data": str(cfg.data), "scale": scale, "border": scale,
            "lr_source": str(cfg.lr) if cfg.lr else "matlab-bicubic", "images": rows, "mean": mean,
            "gain": {k: mean["model"][k] - mean["bicubic"][k] for k in METRIC_KEYS}}


def format_table(result: dict) -> str:
    """Markdown table: one row per image, then the mean."""
    lines = ["| image | bicubic PSNR-Y | model PSNR-Y | gain | bicubic SSIM-Y | model SSIM-Y | model PSNR-RGB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in [*result["images"], {"image": "**mean**", **result["mean"]}]:
        b, m = row["bicubic"], row["model"]
        lines.append(f"| {row['image']} | {b['psnr_y']:.2f} | {m['psnr_y']:.2f} | {m['psnr_y'] - b['psnr_y']:+.2f} | "
                     f"{b['ssim_y']:.4f} | {m['ssim_y']:.4f} | {m['psnr_rgb']:.2f} |")
    return "\n".join(lines)
