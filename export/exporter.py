"""Exporting a checkpoint (``elsr export``): any format of the table, FP32 or INT8 from QAT, checked and
validated in its own runtime before it is called done."""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from elsr.data.datasets import open_training_data
from elsr.data.validation import ValidationSet
from elsr.errors import ElsrError
from elsr.export.checks import format_validation
from elsr.export.formats import FORMATS, ExportFormat
from elsr.export.onnx_fp32 import MAX_CHECK_IMAGES
from elsr.export.onnx_int8 import load_int8_source
from elsr.export.request import ExportRequest
from elsr.io.files import disk_bytes, refuse_overwriting_inputs, remove_output
from elsr.io.images import list_images
from elsr.model.checkpoint import load_model
from elsr.model.inference import resolve_device
from elsr.model.network import ELSR
from elsr.quant.checkpoint import save_qat_checkpoint
from elsr.quant.fake_quant import QuantELSR
from elsr.quant.params import QuantParams
from elsr.quant.qat import QATConfig, selected_metrics, train_qat
from elsr.runtime.loaders import runtime_named
from elsr.runtime.tiling import check_forward_fits

log = logging.getLogger(__name__)

QAT_SUFFIX = ".qat.pt"
MAX_QAT_DRIFT = 0.2  # relative output difference above which a QAT checkpoint seems to come from other weights


@dataclass
class ExportConfig:
    weights: Path                                   # the FP32 checkpoint
    format: str = "onnx"                            # a key of elsr.export.formats.FORMATS
    out: Path | None = None                         # default: elsr_x{scale}[_int8][_uint8io]{suffix} here
    int8: bool = False
    qat_checkpoint: Path | None = None              # with int8: a .qat.pt or the INT8 .onnx built from one
    train: Path | None = None                       # with int8 and no qat_checkpoint: run QAT on these
    val: Path | None = None
    qat: QATConfig = field(default_factory=QATConfig)
    fixed_shape: tuple[int, int, int, int] | None = None   # NCHW
    io: str = "float"                               # TFLite/ExecuTorch: the tensors at the ends (the format's io_modes)
    fp16: bool = False                              # Core ML: compute in float16
    opset: int | None = None
    scale: int | None = None                        # expected scale (must match the checkpoint)
    check_images: Path | None = None                # parity also on up to MAX_CHECK_IMAGES of these
    validate: list[Path] = field(default_factory=list)   # HR folders scored in the artifact's runtime
    convert: bool = False
    device: str = "auto"                            # QAT device
    overwrite: bool = False


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """'1x3x180x320' -> (1, 3, 180, 320): an NCHW shape with 3 channels."""
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1 or dims[1] != 3:
        raise ElsrError(f"--fixed-shape {text!r} is not an NCHW shape with 3 channels", fix="e.g. 1x3x180x320")
    check_forward_fits(dims[0], dims[2], dims[3], f"--fixed-shape {text}")   # the artifact is checked at it
    return dims  # type: ignore[return-value]


def _check_options(cfg: ExportConfig, fmt: ExportFormat) -> None:
    """Options that do not fit the format or each other: refused before any work."""
    fmt.ensure_available()
    if cfg.io not in fmt.io_modes:
        raise ElsrError(f"--format {fmt.name} cannot have {cfg.io} tensors at its ends (--io {cfg.io})",
                        fix=f"--format {fmt.name} takes --io {' or '.join(fmt.io_modes)}; tflite and executorch take "
                            f"pixel I/O")
    if cfg.opset is not None and (cfg.int8 or not fmt.opset):
        raise ElsrError("--opset applies to FP32 ONNX and ORT exports only", fix="leave --opset out")
    if not cfg.int8 and (cfg.qat_checkpoint or cfg.train):
        raise ElsrError("--qat-checkpoint and --train are for INT8 exports", fix="add --int8")
    if cfg.fp16 and (cfg.int8 or "fp16" not in fmt.precisions):
        raise ElsrError(f"--fp16 is for FP32 weights in formats that compute in float16 (--format {fmt.name}"
                        f"{' --int8' if cfg.int8 else ''} asked)",
                        fix=f"use --format {' or '.join(f.name for f in FORMATS.values() if 'fp16' in f.precisions)}"
                            " without --int8")
    if cfg.validate and not runtime_named(fmt.runtime).available():
        raise ElsrError(f"--validate runs the model, and {fmt.runtime} models do not run on this machine "
                        f"({platform.system()})", fix="leave --validate out; validate an .onnx, .tflite or .pte "
                                                      "export of the same weights")


def _outputs(cfg: ExportConfig, fmt: ExportFormat, out: Path) -> None:
    """Refuse a wrong suffix and files that exist (without overwrite): the artifact, its companions, the QAT result."""
    if out.suffix.lower() != fmt.suffix:
        raise ElsrError(f"--format {fmt.name} writes {fmt.suffix} files", path=out,
                        fix=f"name the output *{fmt.suffix}")
    outputs = [out, *fmt.companions(out), *([out.with_suffix(QAT_SUFFIX)] if cfg.int8 and not cfg.qat_checkpoint
                                            else [])]
    refuse_overwriting_inputs(outputs, [cfg.weights, cfg.qat_checkpoint, cfg.train, cfg.val, cfg.check_images,
                                        *cfg.validate])
    existing = [p for p in outputs if p.exists()]
    if existing and not cfg.overwrite:
        raise ElsrError("output exists", path=existing[0], fix="pass --overwrite")


def _warn_if_other_weights(qmodel: QuantELSR, model: ELSR, cfg: ExportConfig) -> None:
    """The QAT result should come from these weights (QAT may rescale channels, so compare what they compute)."""
    with torch.no_grad():
        x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        reference = model.eval()(x)
        drift = float((qmodel.to_float()(x) - reference).norm() / reference.norm().clamp_min(1e-12))
    if drift > MAX_QAT_DRIFT:
        log.warning("%s: its float network's output differs from %s's by %.0f%% (it may come from other weights; "
                    "INT8 is compared with --weights)", cfg.qat_checkpoint, cfg.weights, 100 * drift)


def qat_model(cfg: ExportConfig, model: ELSR, out: Path,
              emit: Callable[[str], None]) -> tuple[QuantELSR, QuantParams | None, dict]:
    """The QAT model for an INT8 export, its integer parameters when read from a file, and its meta (its own
    validation PSNR): from ``qat_checkpoint``, or trained now (and saved beside ``out``)."""
    if cfg.qat_checkpoint is not None:
        qmodel, params, meta = load_int8_source(cfg.qat_checkpoint)
        if qmodel.config != model.config:
            raise ElsrError(f"QAT checkpoint is a {qmodel.config} model but --weights is a {model.config} model",
                            path=cfg.qat_checkpoint, fix="pass the .qat.pt made from these weights")
        _warn_if_other_weights(qmodel, model, cfg)
        return qmodel, params, meta
    if cfg.train is None or cfg.val is None:
        raise ElsrError("--int8 needs the QAT weights and ranges",
                        fix="pass --qat-checkpoint QAT.pt, or --train DIR and --val DIR to run QAT now")
    source = open_training_data(cfg.train, cfg.convert)
    val = ValidationSet(cfg.val, cfg.convert)
    qmodel, history = train_qat(model, source, val, cfg.qat, resolve_device(cfg.device), progress=True)
    save_qat_checkpoint(out.with_suffix(QAT_SUFFIX), qmodel, history, cfg.val)
    emit(f"wrote {out.with_suffix(QAT_SUFFIX)} (reuse it with --qat-checkpoint)")
    return qmodel, None, {"val": selected_metrics(history), "val_data": str(cfg.val)}


def export_model(cfg: ExportConfig, emit: Callable[[str], None] = log.info) -> Path:
    """Write, check and validate the artifact ``cfg`` asks for; ``emit`` gets each line of the account."""
    fmt = FORMATS[cfg.format]
    _check_options(cfg, fmt)
    model, ckpt = load_model(cfg.weights, cfg.scale)
    out = cfg.out or fmt.default_name(model.scale, cfg.int8, cfg.io, cfg.fp16)
    _outputs(cfg, fmt, out)
    images = list_images(cfg.check_images)[:MAX_CHECK_IMAGES] if cfg.check_images else []
    for data in cfg.validate:
        list_images(data)  # a missing folder fails now, not after QAT
    qmodel, params, int8_meta = qat_model(cfg, model, out, emit) if cfg.int8 else (None, None, {})
    request = ExportRequest(model, ckpt.get("meta") or {}, qmodel, params, cfg.fixed_shape, cfg.io, cfg.opset,
                            images, int8_meta, cfg.fp16)
    exported = fmt.export(request, out)
    emit(f"wrote {out} ({disk_bytes(out) / 1024:.1f} KiB, {fmt.name}, {request.precision}, x{model.scale})"
         + "".join(f", {p}" for p in exported.files[1:]))
    for line in exported.lines:
        emit(line)
    try:
        for line in fmt.check(request, out):
            emit(line)
    except ElsrError as exc:
        for path in exported.files:
            remove_output(path)
        raise ElsrError(f"{exc.problem}; the file was removed", path=out, fix=exc.fix) from exc
    for data in cfg.validate:
        emit(format_validation(out, fmt.validate(out, model, data, cfg.convert)))
    emit(f"benchmark it: elsr bench --models {out} --backends {fmt.backend} --threads 2")
    return out
