"""The ``elsr`` command: one subcommand per task, each calling the library function the scripts call."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from . import __version__
from .errors import OS_FIXES, ElsrError, from_os_error

# subcommand -> (module with add_arguments/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("elsr.demo", "train on built-in photos, evaluate, and write a report with pictures"),
    "prepare": ("elsr.prepare", "build an HDF5 patch dataset from images, frame folders (REDS) or videos"),
    "train": ("elsr.training", "train with a staged schedule (quick, seed, paper or your YAML)"),
    "eval": ("elsr.evaluate", "PSNR/SSIM (RGB and Y) of a model and of bicubic on a folder of HR images"),
    "upscale": ("elsr.upscale", "super-resolve an image or a folder of images"),
    "export": ("export.onnx_fp32", "export a checkpoint to a self-contained ONNX model, checked against PyTorch"),
    "quantize": ("export.quantize", "INT8 ONNX by quantization-aware training (qat) or static PTQ, with a report"),
    "bench": ("benchmarks.cli", "latency, memory and PSNR of every backend and model format, in one table"),
}

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``selected`` subcommand's module is imported (fast start-up, and one
    command's optional dependencies never break another)."""
    parser = argparse.ArgumentParser(prog="elsr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"elsr {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks (also: ELSR_DEBUG=1)")
    common.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        command.set_defaults(module=module)
        if name == selected:
            importlib.import_module(module).add_arguments(command)
    return parser


def setup_logging(quiet: bool = False) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", force=True)


def quiet_native_libraries() -> None:
    """Keep OpenCV's and FFmpeg's own warnings ("libpng warning", "[h264 @ ...]") off stderr: the tool's
    checks report bad files in one line of their own (--debug leaves them on)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when a capture opens
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # pragma: no cover - very old OpenCV
        pass


def run_command(module: str, args: argparse.Namespace) -> int:
    """Run a subcommand; user errors become one line on stderr and exit code 2, internal ones exit code 1."""
    debug = getattr(args, "debug", False) or os.environ.get("ELSR_DEBUG") == "1"
    if not debug:
        quiet_native_libraries()
    try:
        return importlib.import_module(module).run(args)
    except ElsrError as exc:
        if debug:
            raise
        print(f"elsr: error: {exc.one_line()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        # A file problem no check caught (a full disk, a permission) is still the user's to fix.
        if debug:
            raise
        if exc.errno not in OS_FIXES:
            return internal_error(exc)
        print(f"elsr: error: {from_os_error(exc).one_line()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError as exc:
        if debug:
            raise
        print(f"elsr: error: out of memory ({exc or 'allocation failed'}) (fix: lower --max-memory or --tile, "
              "a smaller batch, or free memory)", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("elsr: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, unless --debug
        if debug:
            raise
        if "Failed to allocate memory" in str(exc):  # onnxruntime's out-of-memory, which is a plain Exception
            print("elsr: error: out of memory in onnxruntime (fix: lower --max-memory or --tile, or free memory)",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        return internal_error(exc)


def internal_error(exc: BaseException) -> int:
    """A bug or an unforeseen failure: one line naming the exception, exit code 1."""
    print(f"elsr: internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:500]} "
          "(rerun with --debug for the traceback)", file=sys.stderr)
    return EXIT_INTERNAL


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    selected = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(selected).parse_args(argv)
    setup_logging(args.quiet)
    return run_command(args.module, args)


def script_main(command: str, argv: list[str] | None = None) -> int:
    """Entry for the thin top-level scripts (train.py, ...): same parser as ``elsr <command>``."""
    return main([command, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
