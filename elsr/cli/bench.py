"""``elsr bench`` / ``python -m elsr.benchmarks``: benchmark every backend on the models given."""

from __future__ import annotations

import argparse
from pathlib import Path

from elsr.benchmarks.backends import BACKENDS
from elsr.benchmarks.bench import run_benchmark
from elsr.benchmarks.config import DEFAULT_RUNS, DEFAULT_WARMUP, BenchConfig, parse_size, resolve_threads
from elsr.benchmarks.report import BENCH_SECTION, format_report, write_markdown, write_outputs, write_video_section
from elsr.cli.command import Parser, common_options, parse_module_arguments, run_command, setup_logging
from elsr.cli.numbers import count, number, threads
from elsr.cli.options import bundled_names, check_checkpoint
from elsr.errors import ElsrError
from elsr.io.files import refuse_other_suffix, refuse_overwriting_inputs
from elsr.io.video import CODECS, CONTAINERS, MAX_CRF, EncodeSettings
from elsr.pretrained import model_path
from elsr.provenance import command_line


def backends_help() -> str:
    return "; ".join(f"{b.name}{'' if b.default else ' (not default)'}: {b.description}" for b in BACKENDS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=model_path, metavar="CKPT",
                        help=f"PyTorch checkpoint (or a bundled one: {bundled_names(checkpoints=True)}): the torch "
                             "rows")
    parser.add_argument("--onnx", "--models", type=model_path, nargs="+", default=[], dest="models", metavar="MODEL",
                        help="model files: .onnx (FP32, INT8 QAT/PTQ) and .ort run by onnxruntime, .tflite by TFLite, "
                             ".pte by ExecuTorch, .mlpackage by Core ML (Apple platforms only; elsewhere a row "
                             "saying so); "
                             f"or bundled models' names ({bundled_names(checkpoints=False)}) (default: none)")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="HR images: PSNR/SSIM of each row as `elsr eval` reports it, plus a bicubic row")
    parser.add_argument("--size", default="180x320", metavar="HxW",
                        help="LR input height x width (default 180x320)")
    parser.add_argument("--runs", type=count, default=DEFAULT_RUNS, help=f"timed runs per row (default {DEFAULT_RUNS})")
    parser.add_argument("--warmup", type=number(int, 0), default=DEFAULT_WARMUP,
                        help=f"untimed runs first (default {DEFAULT_WARMUP})")
    parser.add_argument("--threads", type=threads, nargs="+", metavar="N",
                        help="CPU thread counts, one row each (default: 1 and all cores; 0 = all cores)")
    parser.add_argument("--backends", nargs="+", default=["default"], metavar="NAME",
                        help="backend names or globs, 'default' or 'all' (default: default; e.g. "
                             f"'--backends default torch-compile' adds torch.compile). {backends_help()}")
    parser.add_argument("--video", type=Path, metavar="DIR_OR_FILE",
                        help="also time `elsr upscale` on a video (file, audio copied, or frame folder) to .mp4: "
                             "end to end, the encoder alone on the same frames with the same settings, and the split")
    parser.add_argument("--video-backend", nargs="+", default=[], metavar="NAME",
                        help="rows for the video mode (row or backend names, globs, e.g. '*' for all; default: the "
                             "fastest INT8 row at the thread count `elsr upscale` gives the model beside an encoder)")
    parser.add_argument("--video-frames", type=number(int, 0), default=0, metavar="N",
                        help="use the first N frames (0: all)")
    parser.add_argument("--video-codec", choices=list(CODECS), default=None,
                        help=f"video codec (default: {CONTAINERS['.mp4'].codec}, as `elsr upscale` writes .mp4)")
    parser.add_argument("--video-presets", nargs="+", default=[None], metavar="PRESET",
                        help="encoder presets, one run each (default: the codec's default, as in `elsr upscale`)")
    parser.add_argument("--video-crf", type=number(int, 0, MAX_CRF), default=None,
                        help="video quality (default: the codec's default)")
    parser.add_argument("--convert", action="store_true", help="let elsr eval convert greyscale/RGBA/16-bit images")
    parser.add_argument("--out", type=Path, metavar="DIR", help="write results.json, results.csv, latency_vs_psnr.png")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write a BENCHMARKS.md-style report here")
    parser.add_argument("--markdown-section", default=BENCH_SECTION, metavar="NAME",
                        help="with --markdown: the section the table goes into, in place of the one of that name "
                             "(default: %(default)s, the main table; another name: a section of its own, e.g. "
                             "'ExecuTorch and Core ML')")
    parser.add_argument("--markdown-video", type=Path, metavar="FILE",
                        help="write the video section alone into FILE (BENCHMARKS.md), in place of the one there")


def bench_config(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(weights=args.weights, models=list(args.models), data=args.data, size=parse_size(args.size),
                       runs=args.runs, warmup=args.warmup, threads=resolve_threads(args.threads),
                       backends=args.backends, video=args.video, video_backends=args.video_backend,
                       video_frames=args.video_frames, convert=args.convert,
                       video_encode=[EncodeSettings(args.video_codec, args.video_crf, preset)
                                     for preset in args.video_presets],
                       command=getattr(args, "command_line", None) or command_line())


def run(args: argparse.Namespace) -> int:
    check_checkpoint(args.weights)
    outputs = [*filter(None, (args.out, args.markdown, args.markdown_video))]
    refuse_overwriting_inputs(outputs, [args.weights, *args.models, args.data, args.video])
    for markdown in filter(None, (args.markdown, args.markdown_video)):
        refuse_other_suffix(markdown, ".md", "--markdown and --markdown-video write Markdown files")
    if args.out:  # its plot would be read back as an HR image
        refuse_overwriting_inputs([args.out], [], [args.data])
    result = run_benchmark(bench_config(args))
    print(format_report(result), end="")
    if args.out:
        paths = write_outputs(result, args.out)
        print(f"wrote {', '.join(str(p) for p in paths)}")
    if args.markdown:
        write_markdown(result, args.markdown, args.markdown_section)
        print(f"wrote {args.markdown}")
    if args.markdown_video:
        if not result.video:
            raise ElsrError("--markdown-video needs a video run", fix="pass --video DIR_OR_FILE")
        write_video_section(result, args.markdown_video)
        print(f"wrote the video section of {args.markdown_video}")
    return 0


def module_main(argv: list[str] | None = None) -> int:
    """``python -m elsr.benchmarks``: the same options as ``elsr bench``."""
    parser = Parser(prog="python -m elsr.benchmarks", description=__doc__, parents=[common_options()])
    add_arguments(parser)
    args = parse_module_arguments(parser, argv)
    if isinstance(args, int):
        return args
    setup_logging(args.quiet)
    return run_command(run, args)
