"""``elsr upscale``: super-resolve an image, a folder of images or frames, or a video."""

from __future__ import annotations

import argparse
from pathlib import Path

from elsr.cli.numbers import number, threads
from elsr.cli.options import (add_convert, add_device, add_no_progress, add_overwrite, bundled_names, check_model,
                              config_from_args, default)
from elsr.io.video import CODECS, CONTAINERS, MAX_CRF, MAX_FPS, MIN_FPS, EncodeSettings
from elsr.pretrained import DEFAULT, VIDEO_MODELS, model_path
from elsr.runtime.tiling import MIN_TILE
from elsr.runtime.upscale import UpscaleConfig, upscale_files


def codecs_help() -> str:
    defaults = ", ".join(f"{c.suffix}: {c.codec}" for c in CONTAINERS.values())
    codecs = ", ".join(f"{c.name} ({c.encoder})" for c in CODECS.values())
    return f"video codec: {codecs}; default by container: {defaults}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=model_path, default=None,
                        help="checkpoint (model.pt), ONNX model (.onnx FP32/INT8, .ort), TFLite (.tflite) or a "
                             f"bundled model's name ({bundled_names()}); default: the bundled {DEFAULT} model "
                             "(elsr/pretrained/MODEL_CARD.md); for a video the first of "
                             f"{', '.join(VIDEO_MODELS)} that is bundled and whose runtime is installed")
    parser.add_argument("--input", type=Path, required=True,
                        help="an image, a folder of images/frames, or a video (any container and codec FFmpeg reads)")
    parser.add_argument("--output", type=Path, required=True,
                        help=f"output image, folder (PNG frames, same names), or video ({', '.join(CONTAINERS)}): "
                             "audio and subtitle streams copied unchanged, timestamps and rotation kept")
    parser.add_argument("--codec", choices=list(CODECS), default=None, help=codecs_help())
    parser.add_argument("--crf", type=number(int, 0, MAX_CRF), default=None,
                        help="video quality, lower is better and bigger (default: "
                             f"{', '.join(f'{c.name} {c.crf}' for c in CODECS.values())})")
    parser.add_argument("--preset", default=None,
                        help="encoder speed preset (default: "
                             f"{', '.join(f'{c.name} {c.preset}' for c in CODECS.values())}; x264/x265: ultrafast ... "
                             "veryslow, AV1: 13 (fastest) ... 0, VP9: 8 (fastest) ... 0)")
    parser.add_argument("--encoder-threads", type=threads, default=default(EncodeSettings, "threads"), dest="threads_enc",
                        metavar="N", help="video encoder threads (default: 0, the encoder's own choice)")
    parser.add_argument("--threads", type=threads, default=default(UpscaleConfig, "threads"), metavar="N",
                        help="the model's threads (default: for a video a quarter of the cores, at least 1, as the "
                             "encoder needs the rest; for images its runtime's own choice; 0: that choice always)")
    parser.add_argument("--compare", action="store_true", help="write bicubic and the model side by side")
    parser.add_argument("--tile", type=number(int, MIN_TILE, also=(0,)), default=default(UpscaleConfig, "tile"),
                        help="LR tile side for large images (default: chosen from --max-memory; 0: never tile)")
    parser.add_argument("--max-memory", type=number(float, above=0), default=default(UpscaleConfig, "max_memory_mb"),
                        dest="max_memory_mb", help="memory budget in MB that sets the tile size (default: %(default)s)")
    parser.add_argument("--fps", type=number(float, MIN_FPS, MAX_FPS), default=default(UpscaleConfig, "fps"),
                        help="frame rate of a video made from frames (default: %(default)s; a video keeps its own)")
    add_device(parser)
    add_overwrite(parser, "replace existing outputs")
    add_convert(parser)
    add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    check_model(args.model)
    encode = EncodeSettings(codec=args.codec, crf=args.crf, preset=args.preset, threads=args.threads_enc)
    written = upscale_files(config_from_args(UpscaleConfig, args, encode=encode, progress=not args.no_progress))
    files = written.files
    print(f"wrote {files[0] if len(files) == 1 else f'{len(files)} files to {args.output}'} with {written.model}")
    return 0
