"""Running one command: the options every command has, logging, and every failure as one line and an exit code."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from typing import Callable

from elsr.errors import OS_FIXES, ElsrError, from_os_error

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse's parser whose refusals (an unknown option, a value out of range) are one line like every other
    error: ``elsr: error: argument --tile: must be ...``, exit code 2, no usage block."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"elsr: error: {' '.join(message.split())} (see '{self.prog} --help')\n")


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """The parsed options, or the exit code when the parser has finished (--help, --version: 0; a refusal: 2)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT


def parse_module_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
    """``parse_arguments`` for a ``python -m`` entry point (``argv``: ``sys.argv[1:]`` when None), the options with
    ``command_line``: the command as given, program name first (the reports say how to write them again)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_arguments(parser, argv)
    if not isinstance(args, int):
        args.command_line = " ".join([parser.prog, *map(shlex.quote, argv)])
    return args


def common_options() -> argparse.ArgumentParser:
    """The options every command has."""
    common = Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks (also: ELSR_DEBUG=1)")
    common.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    return common


def setup_logging(quiet: bool = False) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", force=True)


def quiet_native_libraries() -> None:
    """Keep OpenCV's and FFmpeg's own warnings ("libpng warning", "[h264 @ ...]") off stderr: the tool's
    checks report bad files in one line of their own (--debug leaves them on). PyAV keeps FFmpeg's log off by
    default; SVT-AV1 prints its banner to stderr itself unless told errors only (x265: elsr.io.video.CODECS);
    LiteRT logs "INFO: Created TensorFlow Lite XNNPACK delegate" unless told warnings and up."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when a capture opens
    os.environ.setdefault("SVT_LOG", "1")                  # SVT-AV1: errors only, read when an encoder starts
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")     # LiteRT: warnings and errors, read when it first logs
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")     # OpenCV, read when it is imported
    cv2 = sys.modules.get("cv2")                          # already imported: told directly (not imported here:
    if cv2 is not None:                                   # the memory benchmarks fork before loading it)
        try:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except AttributeError:  # pragma: no cover - very old OpenCV
            pass


def run_command(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand; user errors become one line on stderr and exit code 2, internal ones exit code 1."""
    debug = getattr(args, "debug", False) or os.environ.get("ELSR_DEBUG") == "1"
    if not debug:
        quiet_native_libraries()
    try:
        return run(args)
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
        hint = getattr(args, "interrupt_hint", None)
        print(f"elsr: interrupted{f' ({hint})' if hint else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
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
