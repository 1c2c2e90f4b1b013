"""``elsr upscale``: super-resolve an image, a folder of images or frames, or a video."""

from __future__ import annotations

import argparse
from pathlib import Path

from elsr.cli.options import (add_convert, add_device, add_no_progress, add_overwrite, bundled_names, check_model,
                              config_from_args, default)
from elsr.pretrained import model_path, pretrained
from elsr.runtime.upscale import UpscaleConfig, upscale_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=model_path, default=None,
                        help="checkpoint (model.pt), ONNX model (.onnx FP32/INT8, .ort), TFLite (.tflite) or a "
                             f"bundled model's name ({bundled_names()}); default: the bundled x4 INT8 model "
                             "(elsr/pretrained/MODEL_CARD.md)")
    parser.add_argument("--input", type=Path, required=True, help="an image, a folder of images/frames, or a video")
    parser.add_argument("--output", type=Path, required=True,
                        help="output image, folder (PNG frames, same names), or video (.mp4, .avi, ...)")
    parser.add_argument("--compare", action="store_true", help="write bicubic and the model side by side")
    parser.add_argument("--tile", type=int, default=default(UpscaleConfig, "tile"),
                        help="LR tile side for large images (default: chosen from --max-memory; 0: never tile)")
    parser.add_argument("--max-memory", type=float, default=default(UpscaleConfig, "max_memory_mb"),
                        dest="max_memory_mb", help="memory budget in MB that sets the tile size (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=default(UpscaleConfig, "fps"),
                        help="frame rate of a video made from frames (default: %(default)s)")
    add_device(parser)
    add_overwrite(parser, "replace existing outputs")
    add_convert(parser)
    add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    check_model(args.model)
    written = upscale_files(config_from_args(UpscaleConfig, args, model=args.model or pretrained(),
                                             progress=not args.no_progress))
    print(f"wrote {written[0] if len(written) == 1 else f'{len(written)} files to {args.output}'}")
    return 0
