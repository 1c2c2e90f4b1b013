"""``python -m elsr.benchmarks.pte_profile MODEL.pte``: where an ExecuTorch program's time goes, operator by
operator (ExecuTorch's profiler, in a process of its own thread count)."""

from __future__ import annotations

import argparse
from pathlib import Path

from elsr.benchmarks.config import parse_size
from elsr.benchmarks.pte_profile import PteProfileConfig, profile_markdown, profile_program
from elsr.benchmarks.report import BENCHMARKS_TITLE
from elsr.cli.command import Parser, parse_module_arguments, run_command
from elsr.cli.numbers import count, threads
from elsr.io.files import write_section
from elsr.model.network import DEFAULT_FRAME


def _parser() -> Parser:
    parser = Parser(prog="python -m elsr.benchmarks.pte_profile", description=__doc__)
    parser.add_argument("models", nargs="+", type=Path, help=".pte files written by 'elsr export --format executorch'")
    parser.add_argument("--threads", type=threads, default=PteProfileConfig.threads,
                        help="ExecuTorch threads, 0: its own choice (default %(default)s)")
    parser.add_argument("--runs", type=count, default=PteProfileConfig.runs, help="timed runs (default %(default)s)")
    parser.add_argument("--size", default=f"{DEFAULT_FRAME[0]}x{DEFAULT_FRAME[1]}", metavar="HxW",
                        help="LR height x width of a dynamic program (default %(default)s)")
    parser.add_argument("--markdown", type=Path, help="also write the tables into this Markdown file's section")
    parser.add_argument("--markdown-section", default="ExecuTorch profile", help="its section (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_module_arguments(_parser(), argv)
    if isinstance(args, int):
        return args
    return run_command(run, args)


def run(args: argparse.Namespace) -> int:
    text = "\n\n".join(profile_markdown(profile_program(PteProfileConfig(model, args.threads, args.runs,
                                                                         size=parse_size(args.size))))
                       for model in args.models)
    print(text)
    if args.markdown:
        body = f"## {args.markdown_section}\n\n{text}\n\nRegenerate with:\n\n```bash\n{args.command_line}\n```\n"
        write_section(args.markdown, args.markdown_section, body, BENCHMARKS_TITLE)
    return 0
