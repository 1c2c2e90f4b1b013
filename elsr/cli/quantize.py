"""``elsr quantize`` (and ``quantize.py``): an INT8 ONNX model by QAT or PTQ, with a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from elsr.cli.numbers import count, number
from elsr.cli.options import (
    add_convert,
    add_device,
    add_no_progress,
    add_overwrite,
    bundled_names,
    check_checkpoint,
    config_from_args,
)
from elsr.export.quantize_onnx import METHODS, QuantizeConfig, format_report, quantize
from elsr.pretrained import model_path
from elsr.quant.qat import QATConfig
from elsr.train.schedule import MAX_LR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=model_path, required=True,
                        help=f"trained FP32 checkpoint (model.pt), or a bundled one: {bundled_names(checkpoints=True)}")
    parser.add_argument("--method", default="qat", choices=METHODS,
                        help="qat: quantization-aware fine-tuning (the INT8 model to ship); ptq: onnxruntime's static "
                             "post-training quantization, calibrated on --train patches (a baseline); qat writes "
                             "both (default: %(default)s)")
    parser.add_argument("--train", type=Path, required=True, help="training images or .h5 (QAT data, PTQ calibration)")
    parser.add_argument("--val", type=Path, help="validation HR images (QAT model selection, report)")
    parser.add_argument("--eval", type=Path, nargs="+", default=[], dest="eval_data",
                        help="HR image folders to report on (default: --val)")
    parser.add_argument("--out", type=Path, help="INT8 ONNX model to write; beside it: NAME_ptq.onnx, NAME.qat.pt, "
                                                 "NAME.report.md/.json (default: elsr_x{scale}_int8.onnx here)")
    parser.add_argument("--epochs", type=count, default=QATConfig.epochs, help="QAT epochs (default: %(default)s)")
    parser.add_argument("--iters", type=count, default=QATConfig.iters_per_epoch,
                        help="QAT iterations per epoch (default: %(default)s)")
    parser.add_argument("--lr", type=number(float, above=0, high=MAX_LR), default=QATConfig.lr,
                        help="QAT learning rate (default: %(default)s)")
    parser.add_argument("--patch-size", type=count, default=QATConfig.patch_size,
                        help="LR patch size for QAT and PTQ calibration (default: %(default)s)")
    parser.add_argument("--batch-size", type=count, default=QATConfig.batch_size,
                        help="QAT batch size (default: %(default)s)")
    parser.add_argument("--distill", type=number(float), default=QATConfig.distill,
                        help="QAT loss weight (0-1) of the MSE to the FP32 model's output; the rest is the MSE to "
                             "the HR patch (default: %(default)s)")
    parser.add_argument("--luma-weight", type=number(float), default=QATConfig.luma_weight,
                        help="share (0 to below 1) of the QAT loss on the BT.601 luma error, the channel PSNR-Y "
                             "scores; the rest on RGB keeps the colours (default: %(default)s)")
    parser.add_argument("--ema", type=number(float), default=QATConfig.ema,
                        help="decay of a moving average of the QAT weights and ranges, validated each epoch "
                             "beside the raw ones, e.g. 0.999 (default: off)")
    parser.add_argument("--no-split", dest="split", action="store_false",
                        help="carry the skip path as one int8 copy: half the integer MACs of the default, which "
                             "carries it as two copies offset by half a step (one more bit where the INT8 noise costs "
                             "most, and one more bit for the weights that make or take the copies; free in the INT8 "
                             "ONNX graph, whose channels are padded to 16 anyway)")
    parser.add_argument("--qat-checkpoint", type=Path, help="reuse a .qat.pt instead of fine-tuning again")
    add_device(parser)
    add_convert(parser)
    add_overwrite(parser)
    add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    check_checkpoint(args.weights)
    qat = QATConfig(epochs=args.epochs, iters_per_epoch=args.iters, lr=args.lr, patch_size=args.patch_size,
                    batch_size=args.batch_size, distill=args.distill, ema=args.ema, luma_weight=args.luma_weight,
                    split=args.split)
    report = quantize(config_from_args(QuantizeConfig, args, qat=qat, progress=not args.no_progress))
    print(format_report(report))
    print(f"wrote {', '.join(report['files'])}")
    return 0
