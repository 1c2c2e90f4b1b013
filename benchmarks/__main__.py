"""``python -m benchmarks``: the same arguments as ``elsr bench``."""

from __future__ import annotations

import argparse
import shlex
import sys

from elsr.cli import run_command, setup_logging

from . import cli


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=cli.__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also: ELSR_DEBUG=1)")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    cli.add_arguments(parser)
    args = parser.parse_args(argv)
    args.command_line = " ".join(["python -m benchmarks", *map(shlex.quote, argv)])
    setup_logging(args.quiet)
    return run_command("benchmarks.cli", args)


if __name__ == "__main__":
    sys.exit(main())
