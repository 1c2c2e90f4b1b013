"""``python -m elsr.benchmarks.large_image``: upscale a big image under a memory limit, and check the tiles.

Imports nothing that loads PyTorch: the measured child process is forked from this one (see
``elsr.benchmarks.large_image``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from elsr.benchmarks.large_image import LargeImageConfig, run_large_image
from elsr.cli.command import Parser, parse_arguments, run_command
from elsr.cli.numbers import count, number
from elsr.io.files import write_text


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 4000x3000")
    return int(parts[0]), int(parts[1])


def _parser() -> Parser:
    parser = Parser(prog="python -m elsr.benchmarks.large_image", description=__doc__)
    parser.add_argument("--size", type=_size, default=(4000, 3000), help="input WIDTHxHEIGHT (default 4000x3000)")
    parser.add_argument("--max-memory", type=number(float, above=0), default=LargeImageConfig.max_memory_mb,
                        dest="max_memory_mb", help="memory limit in MB (default %(default)s)")
    parser.add_argument("--model", help="model file (default: the bundled x4 INT8 model)")
    parser.add_argument("--tile", type=number(int, 0),
                        help="LR tile side (default: elsr upscale's choice from --max-memory)")
    parser.add_argument("--crop", type=count, default=LargeImageConfig.crop,
                        help="side of the crop checked against an untiled run (default %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(_parser(), sys.argv[1:] if argv is None else argv)
    return args if isinstance(args, int) else run_command(run, args)


def run(args: argparse.Namespace) -> int:
    result = run_large_image(LargeImageConfig(width=args.size[0], height=args.size[1], max_memory_mb=args.max_memory_mb,
                                              model=args.model, tile=args.tile, crop=args.crop))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        write_text(args.json, text + "\n")
    return 0 if result["exit_code"] == 0 else 1
