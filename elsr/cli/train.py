"""``elsr train`` (and ``train.py``): staged training, one process or several under torchrun."""

from __future__ import annotations

import argparse
from pathlib import Path

from elsr.cli.numbers import MAX_SEED, count, number, threads, workers
from elsr.cli.options import add_convert, add_device, add_no_progress, check_checkpoint, config_from_args, default
from elsr.model.network import MAX_CHANNELS
from elsr.pretrained import model_path
from elsr.train import distributed
from elsr.train.precision import AMP_MODES, CHANNELS_LAST_MODES
from elsr.train.schedule import builtin_schedules
from elsr.train.trainer import TrainConfig, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--schedule", default="quick",
                        help=f"built-in schedule ({', '.join(builtin_schedules())}) or a YAML file (default: quick)")
    parser.add_argument("--train", type=Path, required=True, help="image folder (searched recursively) or .h5 file")
    parser.add_argument("--val", type=Path, required=True, help="folder of full-size HR validation images")
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="run folder (default: runs/train)")
    add_device(parser)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    parser.add_argument("--overwrite", action="store_true", help="start again even if --out holds a run")
    parser.add_argument("--weights", type=model_path, help="start the first stage from this checkpoint "
                        "or bundled model (x2, x4; a x2 checkpoint for a x4 stage is transferred, tail re-initialised)")
    parser.add_argument("--seed", type=number(int, 0, MAX_SEED), help="override the schedule's seed")
    parser.add_argument("--channels", type=number(int, 1, MAX_CHANNELS), metavar="N",
                        help="override the schedule's hidden channels (default: the schedule's; the paper's is 6)")
    parser.add_argument("--length", type=number(float, above=0), default=default(TrainConfig, "length"),
                        help="multiply every stage's epochs by this factor, e.g. 0.1 for a short try; a stage left "
                             "with less than half an epoch runs that share of one (default: %(default)s)")
    parser.add_argument("--max-steps", type=count, metavar="N",
                        help="cap the whole run at N training steps, shared among the stages by their length: "
                             "a real short trial, e.g. --max-steps 300 (default: no cap)")
    parser.add_argument("--workers", type=workers, default=default(TrainConfig, "workers"),
                        help="DataLoader workers for HDF5 data (default: %(default)s)")
    parser.add_argument("--threads", type=threads, default=default(TrainConfig, "threads"),
                        help="torch CPU threads (default: PyTorch's choice)")
    add_convert(parser)
    add_no_progress(parser)
    parser.add_argument("--amp", choices=AMP_MODES, default=default(TrainConfig, "amp"),
                        help="mixed precision: bf16 (CUDA, or CPUs with bf16 support) or fp16 (CUDA, with "
                             "loss scaling); default off (float32)")
    parser.add_argument("--channels-last", choices=CHANNELS_LAST_MODES, default=default(TrainConfig, "channels_last"),
                        help="NHWC memory format for the model (auto: on CUDA with --amp; default: %(default)s)")
    parser.add_argument("--dist-timeout", type=number(float, above=0), default=None, metavar="S",
                        help="with several processes (torchrun): seconds a rank waits for a silent peer before "
                             f"the job fails (default {distributed.DEFAULT_TIMEOUT_S:.0f}, "
                             f"or ${distributed.TIMEOUT_ENV})")
    parser.set_defaults(interrupt_hint="rerun the same command with --resume to continue from the last saved epoch")


def run(args: argparse.Namespace) -> int:
    check_checkpoint(args.weights)
    cfg = config_from_args(TrainConfig, args, progress=not args.no_progress)
    summary = train(cfg)
    if distributed.detect(timeout_s=1).is_main:
        print(f"done: {summary['model']} ({summary['val']['psnr_y']:.2f} dB Y on {cfg.val}, "
              f"{summary['gain_y_db']:+.2f} dB over bicubic)")
    return 0
