"""``elsr upscale``: super-resolve one image or a folder of images (PNG out, same names)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .errors import ElsrError
from .imageio import list_images, read_image, write_image


@dataclass
class UpscaleConfig:
    model: Path
    input: Path
    output: Path
    device: str = "auto"
    convert: bool = False
    overwrite: bool = False
    progress: bool = True


def plan_outputs(cfg: UpscaleConfig) -> list[tuple[Path, Path]]:
    """(input, output) pairs; a folder keeps its relative names, with a .png suffix."""
    files = list_images(cfg.input)
    if cfg.input.is_file():
        if cfg.output.is_dir():
            return [(cfg.input, cfg.output / f"{cfg.input.stem}.png")]
        return [(cfg.input, cfg.output)]
    if cfg.output.exists() and not cfg.output.is_dir():
        raise ElsrError("output must be a folder when the input is a folder", path=cfg.output)
    return [(f, (cfg.output / f.relative_to(cfg.input)).with_suffix(".png")) for f in files]


def upscale_files(cfg: UpscaleConfig) -> list[Path]:
    from export.runtime import load_upscaler  # lazy: elsr does not load the export package at start-up

    upscaler = load_upscaler(cfg.model, device=cfg.device)
    pairs = plan_outputs(cfg)
    existing = [out for _, out in pairs if out.exists()]
    if existing and not cfg.overwrite:
        raise ElsrError("output exists", path=existing[0], fix="pass --overwrite or choose another --output")
    for src, dst in tqdm(pairs, desc="upscale", unit="img", disable=None if cfg.progress and len(pairs) > 1 else True):
        write_image(dst, upscaler(read_image(src, cfg.convert)))
    return [dst for _, dst in pairs]


def add_arguments(parser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="checkpoint (model.pt) or ONNX model (.onnx, .ort)")
    parser.add_argument("--input", type=Path, required=True, help="an image or a folder of images")
    parser.add_argument("--output", type=Path, required=True, help="output image, or folder for a folder input")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--convert", action="store_true",
                        help="convert greyscale / RGBA / 16-bit images to 8-bit RGB instead of refusing them")


def run(args) -> int:
    written = upscale_files(UpscaleConfig(model=args.model, input=args.input, output=args.output,
                                          device=args.device, convert=args.convert, overwrite=args.overwrite))
    print(f"wrote {len(written)} image(s) to {args.output}")
    return 0
