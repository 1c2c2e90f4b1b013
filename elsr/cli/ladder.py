"""``elsr ladder``: the size ladder, ELSR at several widths (FP32 and INT8) in every runtime: quality on test
sets, latency, one table and one chart (quality against latency, one line per runtime)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from elsr.benchmarks.config import DEFAULT_RUNS, DEFAULT_WARMUP, parse_size
from elsr.benchmarks.ladder import RUNTIMES, LadderConfig, LadderSize, run_ladder
from elsr.benchmarks.ladder_report import CHART, LADDER_SECTION, format_report, write_markdown, write_outputs
from elsr.cli.numbers import count, number, threads
from elsr.cli.options import add_convert, add_no_progress, check_checkpoint, check_kind
from elsr.io.files import refuse_other_suffix, refuse_overwriting_inputs
from elsr.pretrained import bundled_sizes, pretrained, size_names
from elsr.provenance import command_line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=number(int, 1), nargs="+", metavar="CHANNELS",
                        help="bundled sizes by hidden channels (default: every bundled one: "
                             f"{', '.join(map(str, bundled_sizes()))}; 6 is the paper's)")
    parser.add_argument("--pair", nargs=2, action="append", type=Path, default=[], metavar=("CKPT", "INT8_ONNX"),
                        help="a size of your own: its FP32 checkpoint and the INT8 ONNX of its QAT (`elsr quantize`); "
                             "repeat for each size (with --sizes: added to those; default: none)")
    parser.add_argument("--data", type=Path, nargs="+", required=True, metavar="DIR",
                        help="HR test folders, e.g. Set5/HR Set14/HR; the chart shows the last one")
    add_convert(parser)
    parser.add_argument("--threads", type=threads, default=2, metavar="N",
                        help="CPU threads of every timed row (default: %(default)s)")
    parser.add_argument("--frame", default="180x320", metavar="HxW",
                        help="LR frame height x width that is timed (default 180x320, 720p out at x4)")
    parser.add_argument("--runs", type=count, default=DEFAULT_RUNS,
                        help=f"timed runs per cell (default {DEFAULT_RUNS})")
    parser.add_argument("--warmup", type=number(int, 0), default=DEFAULT_WARMUP,
                        help=f"untimed runs first (default {DEFAULT_WARMUP})")
    parser.add_argument("--runtimes", nargs="+", choices=[r.key for r in RUNTIMES], default=[r.key for r in RUNTIMES],
                        metavar="NAME", help="runtimes to export to and time (default: all of "
                                             f"{', '.join(r.key for r in RUNTIMES)}; one missing here is a cell "
                                             "saying why)")
    parser.add_argument("--work", type=Path, metavar="DIR",
                        help="keep the exported files here (default: a temporary folder, removed at the end)")
    parser.add_argument("--out", type=Path, metavar="DIR", help=f"write results.json, results.csv and {CHART} here")
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help=f"write the table (and the chart of --out) into the {LADDER_SECTION!r} section of a "
                             "BENCHMARKS.md-style file; its other sections stay")
    add_no_progress(parser)


def sizes_from(args: argparse.Namespace) -> list[LadderSize]:
    """The bundled sizes asked (all when neither --sizes nor --pair), then the pairs given."""
    channels = args.sizes if args.sizes else ([] if args.pair else list(bundled_sizes()))
    sizes = []
    for n in dict.fromkeys(channels):
        fp32, int8 = size_names(n)
        sizes.append(LadderSize(pretrained(fp32), pretrained(int8), fp32))
    for weights, int8 in args.pair:
        check_checkpoint(weights, "--pair CKPT")
        check_kind(int8, ("onnx",), "--pair INT8_ONNX")
        refuse_other_suffix(int8, ".onnx", "--pair takes the INT8 .onnx that `elsr quantize` writes")
        sizes.append(LadderSize(weights, int8))
    return sizes


def run(args: argparse.Namespace) -> int:
    sizes = sizes_from(args)
    if args.markdown:
        refuse_other_suffix(args.markdown, ".md", "--markdown writes a Markdown file")
    inputs = [p for s in sizes for p in (s.weights, s.int8)] + list(args.data)
    refuse_overwriting_inputs([*filter(None, (args.out, args.markdown, args.work))], inputs)
    with tempfile.TemporaryDirectory(prefix="elsr-ladder-") as scratch:
        cfg = LadderConfig(sizes, list(args.data), args.work or Path(scratch), args.convert, args.threads, args.runs,
                           args.warmup, parse_size(args.frame), list(dict.fromkeys(args.runtimes)),
                           not args.no_progress, command_line())
        result = run_ladder(cfg)
    print(format_report(result), end="")
    chart = None
    if args.out:
        paths = write_outputs(result, args.out)
        chart = paths[-1]
        print(f"wrote {', '.join(str(p) for p in paths)}")
    if args.markdown:
        write_markdown(result, args.markdown, chart)
        print(f"wrote the {LADDER_SECTION!r} section of {args.markdown}")
    return 0
