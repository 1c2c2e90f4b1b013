"""``python -m elsr.benchmarks.data_loading``: is loading fast enough for training, does prepare stay small.

Imports nothing that loads PyTorch: the prepare child is forked from this process (see
``elsr.benchmarks.data_loading``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from elsr.benchmarks.data_loading import (PrepareMemoryConfig, ThroughputConfig, prepare_memory, throughput,
                                          throughput_markdown)
from elsr.cli.command import Parser, parse_arguments, run_command
from elsr.cli.numbers import count, number, threads, workers
from elsr.io.files import write_text
from elsr.model.devices import DEVICES
from elsr.train.precision import AMP_MODES


def _workers(text: str) -> list[int]:
    """'0,2,4' -> [0, 2, 4], each a worker count."""
    return [workers(t) for t in text.replace(",", " ").split()]


def _parser() -> argparse.ArgumentParser:
    doc = sys.modules["elsr.benchmarks.data_loading"].__doc__
    parser = Parser(prog="python -m elsr.benchmarks.data_loading", description=doc,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput", help="samples/s of loading alone, the training step alone, and both")
    t.add_argument("--data", type=Path, required=True, help="an 'elsr prepare' HDF5 file (or an image folder)")
    t.add_argument("--scale", type=number(int, 2), default=ThroughputConfig.scale)
    t.add_argument("--patch", type=count, default=ThroughputConfig.patch,
                   help="LR patch size (default %(default)s, the paper schedule's x4 stage)")
    t.add_argument("--batch", type=count, default=ThroughputConfig.batch,
                   help="batch size of one process (default %(default)s)")
    t.add_argument("--iters", type=count, default=ThroughputConfig.iters,
                   help="timed iterations per measurement (default %(default)s)")
    t.add_argument("--workers", type=_workers, default=[0, 1, 2], help='DataLoader workers to try, e.g. "0,2,4"')
    t.add_argument("--device", default="auto", choices=DEVICES)
    t.add_argument("--amp", default="off", choices=AMP_MODES)
    t.add_argument("--channels-last", action="store_true", help="NHWC model, as elsr train does with --amp on CUDA")
    t.add_argument("--threads", type=threads, default=0, help="torch threads of the training process (0: default)")
    t.add_argument("--json", type=Path, help="also write the figures here")
    m = sub.add_parser("prepare-memory", help="peak resident memory of 'elsr prepare' on generated 1280x720 frames")
    m.add_argument("--frames", type=count, default=PrepareMemoryConfig.frames)
    m.add_argument("--width", type=count, default=PrepareMemoryConfig.width)
    m.add_argument("--height", type=count, default=PrepareMemoryConfig.height)
    m.add_argument("--work", type=Path, required=True, help="scratch folder for the frames and the HDF5 file")
    m.add_argument("--scales", default=PrepareMemoryConfig.scales)
    m.add_argument("--patch-size", type=count, default=PrepareMemoryConfig.patch_size)
    m.add_argument("--stride", type=count, default=PrepareMemoryConfig.stride)
    m.add_argument("--keep-frames", action="store_true", help="keep the generated frames (default: deleted)")
    m.add_argument("--keep-h5", action="store_true", help="keep the HDF5 file (default: deleted)")
    m.add_argument("--json", type=Path, help="also write the figures here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(_parser(), sys.argv[1:] if argv is None else argv)
    return args if isinstance(args, int) else run_command(run, args)


def run(args: argparse.Namespace) -> int:
    options = {k: v for k, v in vars(args).items() if k not in ("what", "json")}
    if args.what == "throughput":
        result = throughput(ThroughputConfig(**options))
        print(throughput_markdown(result))
    else:
        result = prepare_memory(PrepareMemoryConfig(**options))
        print(json.dumps(result, indent=2))
    if args.json:
        write_text(args.json, json.dumps(result, indent=2))
    return 0
