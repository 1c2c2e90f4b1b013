"""``elsr export`` (and ``export_onnx.py``): a checkpoint to any format of the export table, checked in its runtime."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from elsr.cli.numbers import count, number
from elsr.cli.options import add_convert, add_device, add_overwrite, bundled_names, check_checkpoint, config_from_args
from elsr.export.exporter import ExportConfig, export_model, parse_shape
from elsr.export.formats import FORMATS
from elsr.export.onnx_fp32 import MAX_CHECK_IMAGES, OPSETS
from elsr.export.tflite import TFLITE_IO
from elsr.model.network import SCALES
from elsr.pretrained import model_path
from elsr.quant.qat import QATConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=model_path, required=True,
                        help=f"checkpoint to export (model.pt), or a bundled one: {bundled_names(checkpoints=True)}")
    parser.add_argument("--out", type=Path,
                        help=f"output file (default: elsr_x{{scale}}[_int8 | _fp16]"
                             f"[{' | '.join(io.tag for io in TFLITE_IO.values() if io.tag)}]"
                             f".{{{', '.join(f.suffix[1:] for f in FORMATS.values())}}} here)")
    parser.add_argument("--format", default="onnx", choices=list(FORMATS),
                        help="; ".join(f"{f.name}: {f.description}" for f in FORMATS.values())
                        + " (default: %(default)s)")
    parser.add_argument("--int8", action="store_true",
                        help="INT8 from quantization-aware training: --qat-checkpoint, or --train and --val to run QAT")
    parser.add_argument("--fp16", action="store_true",
                        help="coreml: compute in float16 (what the Neural Engine runs); the weights stored as float16")
    parser.add_argument("--qat-checkpoint", type=model_path, metavar="QAT_PT",
                        help="with --int8: reuse this QAT result: a .qat.pt (from 'elsr quantize' or an earlier --int8 "
                             "export) or the INT8 .onnx built from one (e.g. x4-int8, the bundled one)")
    parser.add_argument("--train", type=Path, help="with --int8 and no --qat-checkpoint: QAT training images or .h5")
    parser.add_argument("--val", type=Path, help="with --int8 and no --qat-checkpoint: QAT validation HR images")
    parser.add_argument("--qat-epochs", type=count, help=f"QAT epochs (default: {QATConfig.epochs}, as elsr quantize)")
    parser.add_argument("--qat-iters", type=count,
                        help=f"QAT iterations per epoch (default: {QATConfig.iters_per_epoch}, as elsr quantize)")
    parser.add_argument("--fixed-shape", metavar="NxCxHxW",
                        help="fix the input shape (e.g. 1x3x180x320; NNAPI, CoreML and TFLite delegates want it); "
                             "default: dynamic batch, height and width")
    io = parser.add_mutually_exclusive_group()
    io.add_argument("--io", choices=list(TFLITE_IO), default="float",
                    help="tflite, executorch (float, int8): the tensors at the graph's ends: " + "; ".join(
                        f"{m.name}: {m.description}" for m in TFLITE_IO.values()) + " (default: float)")
    io.add_argument("--uint8-io", action="store_const", const="uint8", dest="io",
                    help="tflite: the same as --io uint8 (RGB bytes in and out; fully integer for INT8)")
    io.add_argument("--int8-io", action="store_const", const="int8", dest="io",
                    help="tflite, executorch: the same as --io int8 (bytes minus 128 in and out, what NPU delegates "
                         "take)")
    parser.add_argument("--opset", type=number(int, OPSETS.start, OPSETS.stop - 1),
                        help="ONNX opset of the FP32 graph (default: the exporter's)")
    parser.add_argument("--scale", type=number(int, min(SCALES), max(SCALES)),
                        help="expected scale (must match the checkpoint)")
    parser.add_argument("--check-images", type=Path, metavar="DIR",
                        help=f"also check parity on up to {MAX_CHECK_IMAGES} of these images, as LR at their own size")
    parser.add_argument("--validate", type=Path, nargs="+", default=[], metavar="HR_DIR",
                        help="run the artifact in its own runtime on these HR image folders: PSNR-Y against ground "
                             "truth and against the FP32 PyTorch model (default: none)")
    add_convert(parser, "convert greyscale / RGBA / 16-bit images (e.g. Set14) instead of refusing them")
    add_device(parser, "QAT")
    add_overwrite(parser)


def run(args: argparse.Namespace) -> int:
    check_checkpoint(args.weights)
    fixed_shape = parse_shape(args.fixed_shape) if args.fixed_shape else None
    qat = QATConfig()
    if args.qat_epochs is not None:
        qat = replace(qat, epochs=args.qat_epochs)
    if args.qat_iters is not None:
        qat = replace(qat, iters_per_epoch=args.qat_iters)
    export_model(config_from_args(ExportConfig, args, fixed_shape=fixed_shape, qat=qat), emit=print)
    return 0
