"""The elsr command: one subcommand per task; each turns its options into the library's config and runs it."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

from elsr.cli.command import Parser, common_options, parse_arguments, run_command, setup_logging
from elsr.version import __version__


# Each command's module is imported only when that command runs: `elsr upscale` does not load onnx or
# matplotlib, and one command's optional dependencies never break another. The imports are plain ones
# inside these functions, so the layer check (tests/test_layers.py) sees them.
def _demo() -> ModuleType:
    from elsr.cli import demo
    return demo


def _prepare() -> ModuleType:
    from elsr.cli import prepare
    return prepare


def _train() -> ModuleType:
    from elsr.cli import train
    return train


def _eval() -> ModuleType:
    from elsr.cli import eval as eval_command
    return eval_command


def _upscale() -> ModuleType:
    from elsr.cli import upscale
    return upscale


def _export() -> ModuleType:
    from elsr.cli import export
    return export


def _quantize() -> ModuleType:
    from elsr.cli import quantize
    return quantize


def _bench() -> ModuleType:
    from elsr.cli import bench
    return bench


def _ladder() -> ModuleType:
    from elsr.cli import ladder
    return ladder


@dataclass(frozen=True)
class Command:
    summary: str
    module: Callable[[], ModuleType]   # gives the module with add_arguments(parser) and run(args)


COMMANDS: dict[str, Command] = {
    "demo": Command("train on built-in photos, quantize, export, benchmark, and write a report with pictures", _demo),
    "prepare": Command("build an HDF5 patch dataset from images, frame folders (REDS) or videos", _prepare),
    "train": Command("train with a staged schedule (a built-in one or your YAML)", _train),
    "eval": Command("PSNR/SSIM (RGB and Y) of a model and of bicubic on a folder of HR images", _eval),
    "upscale": Command("super-resolve an image, a folder of images or frames, or a video", _upscale),
    "export": Command("export a checkpoint to ONNX, ORT, TFLite, ExecuTorch or Core ML (--format onnx, ort, tflite, "
                      "executorch, coreml; FP32, or INT8 from QAT), checked in its runtime", _export),
    "quantize": Command("INT8 ONNX by quantization-aware training (qat) or static PTQ, with a report", _quantize),
    "bench": Command("latency, memory and PSNR of every backend and model format, in one table", _bench),
    "ladder": Command("the size ladder: each width FP32 and INT8 in every runtime, quality against latency, one "
                      "table and one chart", _ladder),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``selected`` subcommand's module is imported and its options added."""
    parser = Parser(prog="elsr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"elsr {__version__}")
    common = common_options()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        subparser = sub.add_parser(name, help=command.summary, description=command.summary, parents=[common])
        if name == selected:
            module = command.module()
            module.add_arguments(subparser)
            subparser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    selected = next((a for a in argv if a in COMMANDS), None)
    args = parse_arguments(build_parser(selected), argv)
    if isinstance(args, int):
        return args
    setup_logging(args.quiet)
    return run_command(args.run, args)


def script_main(command: str, argv: list[str] | None = None) -> int:
    """Entry for the thin top-level scripts (train.py, ...): same parser as ``elsr <command>``."""
    return main([command, *(sys.argv[1:] if argv is None else argv)])

