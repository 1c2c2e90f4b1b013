"""``python -m elsr.benchmarks.video``: make test clips, check what an upscale kept, measure `elsr upscale`'s
memory on long videos."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from elsr.benchmarks.video import AUDIO_CODECS, ClipConfig, MemoryConfig, compare_videos, make_clip, upscale_memory
from elsr.cli.command import Parser, common_options, parse_arguments, run_command, setup_logging
from elsr.cli.numbers import count, number
from elsr.cli.options import default
from elsr.io.files import check_new_output, refuse_overwriting_inputs, write_text
from elsr.io.video import MAX_FPS, MIN_FPS


def _audio(text: str) -> str | None:
    return None if text == "none" else text


def _parser() -> argparse.ArgumentParser:
    doc = sys.modules["elsr.benchmarks.video"].__doc__
    parser = Parser(prog="python -m elsr.benchmarks.video", description=doc,
                    formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common_options()])
    sub = parser.add_subparsers(dest="what", required=True)
    clip = sub.add_parser("clip", help="a test video from a frame folder: H.264, a sine tone as AAC or Opus")
    memory = sub.add_parser("memory", help="peak memory of `elsr upscale` on clips of the frames looped N times")
    for p in (clip, memory):
        p.add_argument("--frames", type=Path, required=True, help="folder of frames (sorted by name)")
        p.add_argument("--fps", type=number(float, MIN_FPS, MAX_FPS), default=default(ClipConfig, "fps"),
                       help="frame rate (default %(default)s)")
        p.add_argument("--audio", choices=[*AUDIO_CODECS, "none"], default=default(ClipConfig, "audio"),
                       help="audio track: a 440 Hz tone (default %(default)s)")
    clip.add_argument("--out", type=Path, required=True, help="the clip (.mp4, .mkv, .mov, .webm)")
    clip.add_argument("--loops", type=count, default=default(ClipConfig, "loops"),
                      help="the frames this many times over")
    clip.add_argument("--subtitles", action="store_true", help="add a SubRip subtitle track, one cue a second")
    clip.add_argument("--overwrite", action="store_true", help="replace an existing clip")
    memory.add_argument("--loops", type=count, nargs="+", default=default(MemoryConfig, "loops"),
                        help="clip lengths, in loops of the frames (default: 1 10)")
    memory.add_argument("--json", type=Path, help="also write the results here")
    check = sub.add_parser("check", help="what an upscaled video kept of its source: frames, times, copied streams")
    check.add_argument("--input", type=Path, required=True, help="the source video")
    check.add_argument("--output", type=Path, required=True, help="`elsr upscale`'s output of it")
    memory.add_argument("upscale_args", nargs=argparse.REMAINDER,
                        help="after --: more `elsr upscale` options (--model, --preset, ...)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.what == "check":
        print(json.dumps(compare_videos(args.input, args.output), indent=2, default=str))
        return 0
    if args.what == "clip":
        check_new_output(args.out, args.overwrite)
        refuse_overwriting_inputs([args.out], [args.frames])
        out = make_clip(ClipConfig(args.frames, args.out, args.fps, _audio(args.audio), args.subtitles, args.loops))
        print(f"wrote {out}")
        return 0
    extra = args.upscale_args[1:] if args.upscale_args[:1] == ["--"] else args.upscale_args
    results = upscale_memory(MemoryConfig(args.frames, args.loops, args.fps, _audio(args.audio), extra))
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        write_text(args.json, text + "\n")
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(_parser(), sys.argv[1:] if argv is None else argv)
    if isinstance(args, int):
        return args
    setup_logging(args.quiet)
    return run_command(run, args)
