"""``elsr eval``: per-image and mean PSNR/SSIM (RGB and Y) of a model and of bicubic."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from elsr.cli.numbers import number
from elsr.cli.options import (add_convert, add_device, add_no_progress, add_overwrite, bundled_names, check_model,
                              config_from_args)
from elsr.io.files import check_new_output, refuse_other_suffix, refuse_overwriting_inputs, write_text
from elsr.io.images import IMAGE_SUFFIXES
from elsr.model.network import SCALES
from elsr.pretrained import model_path
from elsr.runtime.evaluate import EvalConfig, evaluate, format_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=model_path, required=True,
                        help="checkpoint (model.pt), ONNX (.onnx FP32/INT8), ORT (.ort) or TFLite (.tflite) model, "
                             f"or a bundled model's name ({bundled_names()})")
    parser.add_argument("--data", type=Path, required=True, help="folder of HR images")
    parser.add_argument("--scale", type=number(int, min(SCALES), max(SCALES)),
                        help="expected scale (must match the model)")
    parser.add_argument("--lr", type=Path, help="folder of given LR images instead of MATLAB-bicubic downscaling")
    parser.add_argument("--json", type=Path, help="write the full results as JSON here")
    add_overwrite(parser, "replace an existing --json file")
    add_device(parser)
    add_convert(parser)
    add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    check_model(args.model)
    if args.json:
        check_new_output(args.json, args.overwrite)  # before the work, not after it
        refuse_overwriting_inputs([args.json], [args.model, args.data, args.lr], [args.data, args.lr], IMAGE_SUFFIXES)
        refuse_other_suffix(args.json, ".json", "--json writes a JSON file")
    result = evaluate(config_from_args(EvalConfig, args, progress=not args.no_progress))
    print(f"x{result['scale']}, border {result['border']}, LR: {result['lr_source']}")
    print(format_table(result))
    if args.json:
        write_text(args.json, json.dumps(result, indent=2))
    return 0
