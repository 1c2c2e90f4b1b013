"""``python -m elsr.benchmarks.arm64``: the mobile artifacts on emulated ARM64 phone cores, bit for bit against x86.

Needs root (Debian tools, an arm64 root file system, private namespaces); the first run sets up what it
needs in --cache (a few minutes, network), later runs reuse it. Exit code 0: every judged row agrees
with x86; 1: one does not (the verdict line says which); 2: it cannot run (one line says why).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from elsr.benchmarks.arm64 import Arm64Config, run_arm64
from elsr.benchmarks.arm64.artifacts import ARTIFACTS
from elsr.benchmarks.arm64.report import HEADING, SECTION, markdown
from elsr.benchmarks.arm64.targets import CORES
from elsr.benchmarks.report import BENCHMARKS_TITLE
from elsr.cli.command import Parser, common_options, parse_module_arguments, run_command, setup_logging
from elsr.cli.numbers import count, threads
from elsr.cli.options import add_convert, default
from elsr.io.files import write_section, write_text


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m elsr.benchmarks.arm64", description=__doc__, parents=[common_options()],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=default(Arm64Config, "cache"),
                        help="QEMU, the arm64 root and the wheels, kept between runs (default: %(default)s)")
    parser.add_argument("--cores", nargs="+", default=list(default(Arm64Config, "cores")), metavar="QEMU_CPU",
                        help="emulated cores (default: " + " ".join(c.name for c in CORES) + ")")
    parser.add_argument("--qemu-suite", default=default(Arm64Config, "qemu_suite"),
                        help="Debian suite whose qemu-user(-static) to use, from this machine's mirror "
                             "(default: %(default)s; bookworm's QEMU 7.2 gets SME's SMOPA wrong)")
    parser.add_argument("--hr", type=Path, help="folder of HR images (default: scikit-image's bundled photos)")
    add_convert(parser)
    parser.add_argument("--crop", type=count, default=default(Arm64Config, "crop"),
                        help="side of the centre crop of each LR image (default %(default)s)")
    parser.add_argument("--artifacts", nargs="+", metavar="FILE",
                        help="only these artifacts (default: " + " ".join(a.file for a in ARTIFACTS) + ")")
    parser.add_argument("--jobs", type=count, default=default(Arm64Config, "jobs"),
                        help="emulated cores run at once (default %(default)s)")
    parser.add_argument("--threads", type=threads, default=default(Arm64Config, "threads"),
                        help="threads of each runtime inside the emulator (default %(default)s)")
    parser.add_argument("--probes", action="store_true",
                        help="also run each INT8 TFLite operator alone (which kernel differs, if one does)")
    parser.add_argument("--json", type=Path, help="write the records (one per artifact, runtime and core) here")
    parser.add_argument("--markdown", type=Path,
                        help=f"write the tables as the section '{HEADING}' of this BENCHMARKS.md-style file (its "
                             "other sections are kept)")
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = Arm64Config(cache=args.cache, cores=tuple(args.cores), qemu_suite=args.qemu_suite, hr=args.hr,
                      convert=args.convert, crop=args.crop, artifacts=args.artifacts, jobs=args.jobs,
                      threads=args.threads, probes=args.probes)
    result = run_arm64(cfg, emit=print)
    text = markdown(result, args.command_line)
    print("\n" + text, end="")
    if args.json:
        write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.markdown:
        write_section(args.markdown, SECTION, text, BENCHMARKS_TITLE)
        print(f"wrote {args.markdown}")
    return 0 if result["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_module_arguments(_parser(), argv)
    if isinstance(args, int):
        return args
    setup_logging(args.quiet)
    return run_command(run, args)
