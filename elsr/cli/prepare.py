"""``elsr prepare``: an HDF5 file of aligned HR/LR training patches."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from elsr.cli.numbers import count, number
from elsr.cli.options import add_convert, add_overwrite, config_from_args, default
from elsr.data.prepare import COMPRESSIONS, MAX_PATCH, PrepareConfig, human_bytes, prepare


def _scale_list(text: str) -> list[int]:
    """argparse type: "4", "2,4" or "2 4" -> list of ints."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"scales must be integers such as 2,4, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", type=Path,
                        help="image folders, frame folders (e.g. REDS train_sharp), images or video files")
    parser.add_argument("--out", type=Path, required=True, help="output HDF5 file")
    parser.add_argument("--scales", nargs="+", type=_scale_list, default=[list(default(PrepareConfig, "scales"))],
                        help='upscaling factors, e.g. "2,4" or 2 4 (2, 3 or 4; the first one is linked as "lr"; '
                             f'default: {",".join(map(str, default(PrepareConfig, "scales")))})')
    parser.add_argument("--patch-size", type=number(int, 1, MAX_PATCH), default=default(PrepareConfig, "patch_size"),
                        help="HR patch size in pixels (default %(default)s)")
    parser.add_argument("--stride", type=count, default=default(PrepareConfig, "stride"),
                        help="HR step between patches (default %(default)s)")
    parser.add_argument("--reds-lr", type=Path, default=None,
                        help="official REDS x4 LR frames (train_sharp_bicubic/X4) used instead of our downscale")
    parser.add_argument("--frame-step", type=count, default=default(PrepareConfig, "frame_step"),
                        help="use every n-th frame of video files (default %(default)s)")
    parser.add_argument("--compression", choices=COMPRESSIONS, default=default(PrepareConfig, "compression"),
                        help="HDF5 compression (default %(default)s, fastest to read)")
    add_convert(parser, "convert grey, RGBA and 16-bit images to 8-bit RGB instead of failing")
    add_overwrite(parser, "replace an existing output file")


def run(args: argparse.Namespace) -> int:
    scales = tuple(s for group in args.scales for s in group)
    summary = prepare(config_from_args(PrepareConfig, args, sources=list(args.sources), scales=scales))
    skipped = f", {summary['skipped']} skipped (smaller than a patch)" if summary["skipped"] else ""
    print(f"wrote {summary['out']}: {summary['num_patches']} patches from {summary['num_images']} images"
          f"{skipped}, {human_bytes(summary['bytes'])}")
    return 0
