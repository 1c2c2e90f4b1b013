"""``elsr quantize --method qat|ptq``: an INT8 ONNX model, with a report against FP32, PTQ and bicubic."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from elsr.checkpoint import load_model
from elsr.data import ValidationSet, open_training_data
from elsr.errors import ElsrError
from elsr.evaluate import EvalConfig, evaluate
from elsr.fileio import write_text
from elsr.imageio import list_images
from elsr.inference import image_to_tensor, resolve_device
from elsr.model import ELSR
from elsr.pretrained import model_path
from elsr.quantization import (OBSERVED, QATConfig, QuantELSR, float_taps, load_qat_checkpoint, quant_params,
                               save_qat_checkpoint, train_qat)

from .onnx_fp32 import INPUT_NAME, export_onnx, onnx_metadata
from .onnx_int8 import build_int8_model, save_model

log = logging.getLogger(__name__)
METHODS = ("qat", "ptq")


@dataclass
class QuantizeConfig:
    weights: Path
    out: Path
    method: str = "qat"
    train: Path | None = None            # training data (QAT fine-tuning and PTQ calibration)
    val: Path | None = None              # validation images (QAT model selection)
    eval_data: list[Path] = field(default_factory=list)  # reported sets (default: val)
    qat: QATConfig = field(default_factory=QATConfig)
    qat_checkpoint: Path | None = None   # reuse a QAT result instead of fine-tuning again
    calibration_images: int = 64       # LR patches (of the QAT patch size) for PTQ calibration
    device: str = "auto"
    convert: bool = False
    overwrite: bool = False
    progress: bool = True


class PatchCalibrationReader(CalibrationDataReader):
    """onnxruntime CalibrationDataReader over real LR patches of the training data."""

    def __init__(self, patches: list[np.ndarray]) -> None:
        self._items = iter(patches)

    def get_next(self) -> dict | None:
        item = next(self._items, None)
        return None if item is None else {INPUT_NAME: item}


def calibration_patches(cfg: QuantizeConfig, scale: int) -> list[np.ndarray]:
    source = open_training_data(cfg.train, cfg.convert, workers=0)
    batches = source.batches(scale, cfg.qat.patch_size, 1, cfg.calibration_images, (7, 7, 7))
    return [lr.numpy() for lr, _ in batches]


def quantize_ptq(fp32_onnx: Path, out: Path, patches: list[np.ndarray]) -> Path:
    """onnxruntime static quantization (QDQ, per-channel int8 weights, uint8 activations, min/max)."""
    reader = PatchCalibrationReader(patches)
    prepared = fp32_onnx.with_name(f"{fp32_onnx.stem}_prep.onnx")
    quant_pre_process(str(fp32_onnx), str(prepared))  # shape inference and graph clean-up, as recommended
    quantized = fp32_onnx.with_name(f"{fp32_onnx.stem}_ptq.onnx")
    quantize_static(str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    model = onnx.load(str(quantized))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(precision="int8", quantization="ptq; onnxruntime quantize_static qdq; per-channel int8 weights, "
                                                 "uint8 activations, min/max calibration")
    onnx.helper.set_model_props(model, props)
    return save_model(model, out)


def layer_sqnr(model: ELSR, int8_onnx: Path, qmodel: QuantELSR, images: list[np.ndarray]) -> dict[str, float]:
    """Signal-to-quantization-noise (dB) of each quantized tensor of the INT8 graph vs the same weights in float."""
    names = [*OBSERVED, "tail"]
    graph = onnx.load(str(int8_onnx))
    for name in names:
        graph.graph.output.append(helper.make_tensor_value_info(f"{name}_q", TensorProto.UINT8, None))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    signal = dict.fromkeys(names, 0.0)
    noise = dict.fromkeys(names, 0.0)
    for image in images:
        x = image_to_tensor(image)
        outputs = session.run([f"{n}_q" for n in names], {INPUT_NAME: x.numpy()})
        with torch.no_grad():
            ref = float_taps(model, x)
        for name, q in zip(names, outputs):
            scale, zero_point = qmodel.quant[name].qparams()
            f = ref[name].double().numpy()
            deq = (q[:, : f.shape[1]].astype(np.float64) - zero_point) * scale  # minus zero-padded channels
            signal[name] += float((f ** 2).sum())
            noise[name] += float(((f - deq) ** 2).sum())
    return {n: 10 * np.log10(signal[n] / max(noise[n], 1e-30)) for n in names}


def int8_matches_fake_quant(qmodel: QuantELSR, int8_onnx: Path, image: np.ndarray) -> dict[str, float]:
    """How closely onnxruntime's integer graph reproduces the PyTorch fake-quant model (in grey levels)."""
    x = image_to_tensor(image)
    ours = ort.InferenceSession(str(int8_onnx), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x.numpy()})[0]
    with torch.no_grad():
        ref = qmodel(x).numpy()
    diff = np.abs(ours - ref) * 255
    return {"max_levels": float(diff.max()), "share_within_1_level": float((diff <= 1.0 + 1e-3).mean()),
            "share_exact": float((diff < 1e-3).mean())}


def quantize(cfg: QuantizeConfig) -> dict:
    """Run QAT or PTQ, write the INT8 model and its report; returns the report."""
    if cfg.method not in METHODS:
        raise ElsrError(f"unknown method {cfg.method!r}", fix=f"use one of {', '.join(METHODS)}")
    if cfg.out.exists() and not cfg.overwrite:
        raise ElsrError("output exists", path=cfg.out, fix="pass --overwrite or choose another --out")
    if cfg.train is None:
        raise ElsrError("--train is needed (QAT data and PTQ calibration images)")
    model, ckpt = load_model(cfg.weights)
    reused = load_qat_checkpoint(cfg.qat_checkpoint) if cfg.method == "qat" and cfg.qat_checkpoint else None
    if cfg.method == "qat" and cfg.val is None:
        raise ElsrError("--val is needed for QAT (model selection)", fix="pass --val HR_FOLDER")
    scale = model.scale
    device = resolve_device(cfg.device)
    eval_sets = cfg.eval_data or ([cfg.val] if cfg.val else [])
    for folder in {*([cfg.val] if cfg.val else []), *eval_sets}:  # before anything is written
        list_images(folder)
    out = cfg.out
    ptq_out = out if cfg.method == "ptq" else out.with_name(f"{out.stem}_ptq.onnx")
    report: dict = {"method": cfg.method, "weights": str(cfg.weights), "scale": scale, "models": {}}
    patches = calibration_patches(cfg, scale)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_onnx = export_onnx(model, Path(tmp) / "fp32.onnx", meta=ckpt.get("meta"))
        quantize_ptq(fp32_onnx, ptq_out, patches)
    report["models"]["ptq"] = str(ptq_out)
    if cfg.method == "qat":
        if reused is not None:
            qmodel, history = reused, []
        else:
            source = open_training_data(cfg.train, cfg.convert)
            val = ValidationSet(cfg.val, cfg.convert)
            qmodel, history = train_qat(model, source, val, cfg.qat, device, cfg.progress, log)
            save_qat_checkpoint(out.with_suffix(".qat.pt"), qmodel, history)
        report["qat_history"] = history
        metadata = {**onnx_metadata(model, "int8", ckpt.get("meta")),
                    "quantization": "qat; qdq; int8 per-channel weights, int32 biases, uint8 activations"}
        save_model(build_int8_model(quant_params(qmodel), metadata), out)
        report["models"]["qat"] = str(out)
        images = [item.lr for item in ValidationSet(eval_sets[0], cfg.convert).for_scale(scale)]  # QAT has --val
        report["int8_vs_fake_quant"] = int8_matches_fake_quant(qmodel, out, images[0])
        report["layer_sqnr_db"] = layer_sqnr(qmodel.to_float(), out, qmodel, images)
    report["eval"] = {}
    for data in eval_sets:
        rows = {"fp32": evaluate(EvalConfig(model=cfg.weights, data=data, convert=cfg.convert, progress=False))}
        for name, path in report["models"].items():
            rows[name] = evaluate(EvalConfig(model=Path(path), data=data, convert=cfg.convert, progress=False))
        report["eval"][str(data)] = {
            "bicubic": rows["fp32"]["mean"]["bicubic"],
            **{name: result["mean"]["model"] for name, result in rows.items()}}
    write_text(out.with_suffix(".report.json"), json.dumps(report, indent=2))
    write_text(out.with_suffix(".report.md"), format_report(report))
    return report


def format_report(report: dict) -> str:
    lines = [f"# INT8 quantization report ({report['method'].upper()}, x{report['scale']})", "",
             "| data | model | PSNR-Y | vs FP32 | PSNR-RGB | SSIM-Y | SSIM-RGB |", "|---|---|---:|---:|---:|---:|---:|"]
    for data, rows in report["eval"].items():
        for name, m in rows.items():
            lines.append(f"| {Path(data).parent.name or data} | {name} | {m['psnr_y']:.3f} | "
                         f"{m['psnr_y'] - rows['fp32']['psnr_y']:+.3f} | {m['psnr_rgb']:.3f} | {m['ssim_y']:.4f} | "
                         f"{m['ssim_rgb']:.4f} |")
    if report.get("layer_sqnr_db"):
        lines += ["", "Per-layer signal-to-quantization-noise of the INT8 graph vs its own weights in float (dB):", "",
                  "| tensor | SQNR (dB) |", "|---|---:|",
                  *[f"| {k} | {v:.1f} |" for k, v in report["layer_sqnr_db"].items()]]
    if report.get("int8_vs_fake_quant"):
        m = report["int8_vs_fake_quant"]
        lines += ["", f"onnxruntime INT8 vs PyTorch fake-quant: {100 * m['share_exact']:.3f}% of pixels identical, "
                      f"{100 * m['share_within_1_level']:.3f}% within one level, max {m['max_levels']:.0f} levels."]
    return "\n".join(lines) + "\n"


def add_arguments(parser) -> None:
    parser.add_argument("--weights", type=model_path, required=True,
                        help="trained FP32 checkpoint (model.pt), or x4 for the bundled one")
    parser.add_argument("--method", default="qat", choices=METHODS)
    parser.add_argument("--train", type=Path, required=True, help="training images or .h5 (QAT data, PTQ calibration)")
    parser.add_argument("--val", type=Path, help="validation HR images (QAT model selection, report)")
    parser.add_argument("--eval", type=Path, nargs="+", default=[], dest="eval_data",
                        help="HR image folders to report on (default: --val)")
    parser.add_argument("--out", type=Path, default=Path("elsr_int8.onnx"), help="INT8 ONNX model to write")
    parser.add_argument("--epochs", type=int, default=QATConfig.epochs, help="QAT epochs")
    parser.add_argument("--iters", type=int, default=QATConfig.iters_per_epoch, help="QAT iterations per epoch")
    parser.add_argument("--lr", type=float, default=QATConfig.lr, help="QAT learning rate")
    parser.add_argument("--patch-size", type=int, default=QATConfig.patch_size,
                        help="LR patch size for QAT and PTQ calibration")
    parser.add_argument("--batch-size", type=int, default=QATConfig.batch_size, help="QAT batch size")
    parser.add_argument("--distill", type=float, default=QATConfig.distill,
                        help="QAT loss weight (0-1) of the MSE to the FP32 model's output; the rest is the MSE to "
                             "the HR patch (default: %(default)s)")
    parser.add_argument("--luma-weight", type=float, default=QATConfig.luma_weight,
                        help="share (0 to below 1) of the QAT loss on the BT.601 luma error, the channel PSNR-Y "
                             "scores; the rest on RGB keeps the colours (default: %(default)s)")
    parser.add_argument("--ema", type=float, default=QATConfig.ema,
                        help="decay of a moving average of the QAT weights and ranges, validated each epoch "
                             "beside the raw ones, e.g. 0.999 (default: off)")
    parser.add_argument("--qat-checkpoint", type=Path, help="reuse a .qat.pt instead of fine-tuning again")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--convert", action="store_true",
                        help="convert greyscale / RGBA / 16-bit images to 8-bit RGB instead of refusing them")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    qat = QATConfig(epochs=args.epochs, iters_per_epoch=args.iters, lr=args.lr, patch_size=args.patch_size,
                    batch_size=args.batch_size, distill=args.distill, ema=args.ema,
                    luma_weight=args.luma_weight)
    report = quantize(QuantizeConfig(weights=args.weights, out=args.out, method=args.method, train=args.train,
                                     val=args.val, eval_data=args.eval_data, qat=qat,
                                     qat_checkpoint=args.qat_checkpoint, device=args.device, convert=args.convert,
                                     overwrite=args.overwrite, progress=not args.no_progress))
    print(format_report(report))
    print(f"wrote {args.out} and {args.out.with_suffix('.report.md')}")
    return 0
