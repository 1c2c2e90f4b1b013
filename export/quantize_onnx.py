"""INT8 ONNX models by QAT or PTQ (``elsr quantize``), with a report against FP32, PTQ and bicubic."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from elsr.export.int8_debug import int8_matches_fake_quant, layer_sqnr
from elsr.export.onnx_fp32 import export_onnx
from elsr.export.onnx_int8 import INT8_QUANTIZATION, build_int8_model, save_model
from elsr.export.ptq import quantize_ptq

from elsr.data.datasets import TrainingSource, open_training_data
from elsr.data.validation import ValidationSet
from elsr.errors import ElsrError
from elsr.io.files import refuse_overwriting_inputs, write_text
from elsr.io.images import list_images
from elsr.model.checkpoint import load_model
from elsr.model.inference import resolve_device
from elsr.quant.checkpoint import read_qat_checkpoint, save_qat_checkpoint
from elsr.quant.params import quant_params
from elsr.quant.qat import QATConfig, selected_metrics, train_qat
from elsr.runtime.contract import artifact_name, model_metadata
from elsr.runtime.evaluate import EvalConfig, evaluate
from elsr.train.memory import check_batch_fits

log = logging.getLogger(__name__)
METHODS = ("qat", "ptq")


@dataclass
class QuantizeConfig:
    weights: Path
    out: Path | None = None              # default: elsr_x{scale}_int8.onnx here
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


def calibration_patches(cfg: QuantizeConfig, source: TrainingSource, scale: int) -> list[np.ndarray]:
    batches = source.batches(scale, cfg.qat.patch_size, 1, cfg.calibration_images, (7, 7, 7))
    return [lr.numpy() for lr, _ in batches]


def ptq_path(method: str, out: Path) -> Path:
    return out if method == "ptq" else out.with_name(f"{out.stem}_ptq.onnx")


def check_outputs(cfg: QuantizeConfig, out: Path) -> None:
    """Before any work: an .onnx output, no file written over an input, none that exists unless overwrite (the
    model ``out``, the PTQ model beside a QAT one, the QAT checkpoint, the reports)."""
    if out.suffix.lower() != ".onnx":
        raise ElsrError(f"quantize writes an INT8 ONNX model, not a {out.suffix or 'suffix-less'} file", path=out,
                        fix="name it *.onnx (elsr export turns it into .ort or .tflite)")
    training = cfg.method == "qat" and not cfg.qat_checkpoint
    outputs = [out, ptq_path(cfg.method, out), *([out.with_suffix(".qat.pt")] if training else []),
               out.with_suffix(".report.json"), out.with_suffix(".report.md")]
    refuse_overwriting_inputs(outputs, [cfg.weights, cfg.qat_checkpoint, cfg.train, cfg.val, *cfg.eval_data])
    existing = [p for p in dict.fromkeys(outputs) if p.exists()]
    if existing and not cfg.overwrite:
        raise ElsrError("output exists", path=existing[0], fix="pass --overwrite or choose another --out")


def quantize(cfg: QuantizeConfig) -> dict:
    """Run QAT or PTQ, write the INT8 model and its report; returns the report."""
    if cfg.method not in METHODS:
        raise ElsrError(f"unknown method {cfg.method!r}", fix=f"use one of {', '.join(METHODS)}")
    if cfg.train is None:
        raise ElsrError("--train is needed (QAT data and PTQ calibration images)")
    model, ckpt = load_model(cfg.weights)
    out = cfg.out or artifact_name(model.scale, True, ".onnx")
    check_outputs(cfg, out)
    reused = read_qat_checkpoint(cfg.qat_checkpoint) if cfg.method == "qat" and cfg.qat_checkpoint else None
    if cfg.method == "qat" and cfg.val is None:
        raise ElsrError("--val is needed for QAT (model selection)", fix="pass --val HR_FOLDER")
    scale = model.scale
    device = resolve_device(cfg.device)
    if cfg.method == "qat" and reused is None:
        check_batch_fits(cfg.qat.batch_size, cfg.qat.patch_size, scale, device.type == "cpu",
                         "--batch-size and --patch-size")
    eval_sets = cfg.eval_data or ([cfg.val] if cfg.val else [])
    for folder in {*([cfg.val] if cfg.val else []), *eval_sets}:  # before anything is written
        list_images(folder)
    ptq_out = ptq_path(cfg.method, out)
    report: dict = {"method": cfg.method, "weights": str(cfg.weights), "scale": scale, "models": {}, "files": []}
    source = open_training_data(cfg.train, cfg.convert)
    patches = calibration_patches(cfg, source, scale)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_onnx = export_onnx(model, Path(tmp) / "fp32.onnx", meta=ckpt.get("meta"))
        quantize_ptq(fp32_onnx, ptq_out, patches)
    report["models"]["ptq"] = str(ptq_out)
    if cfg.method == "qat":
        if reused is not None:
            (qmodel, qat_meta), history = reused, []
        else:
            val = ValidationSet(cfg.val, cfg.convert)
            qmodel, history = train_qat(model, source, val, cfg.qat, device, cfg.progress)
            save_qat_checkpoint(out.with_suffix(".qat.pt"), qmodel, history, cfg.val)
            report["files"].append(str(out.with_suffix(".qat.pt")))
            qat_meta = {"val": selected_metrics(history), "val_data": str(cfg.val)}
        report["qat_history"] = history
        metadata = {**model_metadata(model, "int8", qat_meta), "quantization": INT8_QUANTIZATION}
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
    report["files"] = [*report["models"].values(), *report["files"],
                       *(str(out.with_suffix(suffix)) for suffix in (".report.json", ".report.md"))]
    write_text(out.with_suffix(".report.json"), json.dumps(report, indent=2))
    write_text(out.with_suffix(".report.md"), format_report(report))
    return report


def format_report(report: dict) -> str:
    lines = [f"# INT8 quantization report ({report['method'].upper()}, x{report['scale']})", "",
             "| data | model | PSNR-Y | vs FP32 | PSNR-RGB | vs FP32 | SSIM-Y | SSIM-RGB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for data, rows in report["eval"].items():
        fp32 = rows["fp32"]
        for name, m in rows.items():
            lines.append(f"| {Path(data).parent.name or data} | {name} | {m['psnr_y']:.3f} | "
                         f"{m['psnr_y'] - fp32['psnr_y']:+.3f} | {m['psnr_rgb']:.3f} | "
                         f"{m['psnr_rgb'] - fp32['psnr_rgb']:+.3f} | {m['ssim_y']:.4f} | {m['ssim_rgb']:.4f} |")
    if report.get("layer_sqnr_db"):
        lines += ["", "Per-layer signal-to-quantization-noise of the INT8 graph vs its own weights in float (dB):", "",
                  "| tensor | SQNR (dB) |", "|---|---:|",
                  *[f"| {k} | {v:.1f} |" for k, v in report["layer_sqnr_db"].items()]]
    if report.get("int8_vs_fake_quant"):
        m = report["int8_vs_fake_quant"]
        lines += ["", f"onnxruntime INT8 vs PyTorch fake-quant: {100 * m['share_exact']:.3f}% of pixels identical, "
                      f"{100 * m['share_within_1_level']:.3f}% within one level, max {m['max_levels']:.0f} levels."]
    return "\n".join(lines) + "\n"
