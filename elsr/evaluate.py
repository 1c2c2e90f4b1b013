"""``elsr eval``: per-image and mean PSNR/SSIM (RGB and Y) of a model and of bicubic."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .data import mean_metrics
from .degrade import downscale, upscale
from .errors import ElsrError
from .fileio import check_new_output, write_text
from .imageio import check_min_size, list_images, mod_crop, read_image
from .metrics import image_metrics
from .model import MIN_LR_SIDE
from .pretrained import MODELS, model_path

KEYS = ("psnr_y", "psnr_rgb", "ssim_y", "ssim_rgb")


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


def require_upscaling(upscaler, path: Path) -> int:
    """The model's scale; a model that does not enlarge (a foreign ONNX graph, say) is refused."""
    if upscaler.scale < 2:
        raise ElsrError(f"the model gives x{upscaler.scale} output: not a super-resolution model", path=path,
                        fix="pass an ELSR checkpoint or an ONNX model written by 'elsr export'")
    return upscaler.scale


def evaluate(cfg: EvalConfig) -> dict:
    """Scores of bicubic and the model on every image of ``cfg.data``, plus their means."""
    from export.runtime import load_upscaler  # lazy: elsr does not load the export package at start-up

    upscaler = load_upscaler(cfg.model, cfg.scale, cfg.device)
    scale = require_upscaling(upscaler, cfg.model)
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
            "gain": {k: mean["model"][k] - mean["bicubic"][k] for k in KEYS}}


def format_table(result: dict) -> str:
    """Markdown table: one row per image, then the mean."""
    lines = ["| image | bicubic PSNR-Y | model PSNR-Y | gain | bicubic SSIM-Y | model SSIM-Y | model PSNR-RGB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in [*result["images"], {"image": "**mean**", **result["mean"]}]:
        b, m = row["bicubic"], row["model"]
        lines.append(f"| {row['image']} | {b['psnr_y']:.2f} | {m['psnr_y']:.2f} | {m['psnr_y'] - b['psnr_y']:+.2f} | "
                     f"{b['ssim_y']:.4f} | {m['ssim_y']:.4f} | {m['psnr_rgb']:.2f} |")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("--model", type=model_path, required=True,
                        help="checkpoint (model.pt), ONNX (.onnx FP32/INT8), ORT (.ort) or TFLite (.tflite) model, "
                             f"or a bundled model's name ({', '.join(MODELS)})")
    parser.add_argument("--data", type=Path, required=True, help="folder of HR images")
    parser.add_argument("--scale", type=int, help="expected scale (must match the model)")
    parser.add_argument("--lr", type=Path, help="folder of given LR images instead of MATLAB-bicubic downscaling")
    parser.add_argument("--json", type=Path, help="write the full results as JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--convert", action="store_true",
                        help="convert greyscale / RGBA / 16-bit images to 8-bit RGB instead of refusing them")


def run(args) -> int:
    if args.json:
        check_new_output(args.json, args.overwrite)  # before the work, not after it
    result = evaluate(EvalConfig(model=args.model, data=args.data, scale=args.scale, lr=args.lr,
                                 device=args.device, convert=args.convert))
    print(f"x{result['scale']}, border {result['border']}, LR: {result['lr_source']}")
    print(format_table(result))
    if args.json:
        write_text(args.json, json.dumps(result, indent=2))
    return 0
