"""Quantization-aware training: fine-tune ELSR with fake quantization through the trainer's epoch loop."""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from elsr.data.metrics import METRIC_KEYS, luma_weight_problem
from elsr.errors import ElsrError
from elsr.model.network import ELSR
from elsr.quant.equalize import equalize_channels
from elsr.quant.fake_quant import QuantELSR
from elsr.train.loop import run_epoch, validate
from elsr.train.losses import loss_function
from elsr.train.schedule import MAX_LR, cosine_lr

log = logging.getLogger(__name__)

SELECTIONS = ("psnr_y", "y_and_rgb")  # how train_qat picks the epoch it returns

@dataclass
class QATConfig:
    """Fine-tuning with fake quantization; observers are frozen for the last epochs."""

    epochs: int = 20
    iters_per_epoch: int = 500
    batch_size: int = 32
    patch_size: int = 32           # LR pixels
    lr: float = 5e-4               # cosine-decayed to lr / 10
    loss: str = "mse"
    luma_weight: float = 0.0       # share of the loss on the BT.601 luma error (see elsr.train.losses)
    equalize: bool = True          # cross-layer equalization of the hidden channels before QAT
    split: bool = True             # the skip path as two offset int8 copies: one more bit (elsr.quant.fake_quant)
    learn_ranges: bool = True      # train activation scales and zero points (LSQ) after calibration
    range_lr: float = 1e-3         # their learning rate (log scale; zero point in levels), decayed as lr
    freeze_fraction: float = 0.8   # observer ranges only: share of the epochs (at the end) with frozen ranges
    calibration_batches: int = 16  # forward passes that set the ranges before training
    distill: float = 0.0           # weight of the MSE to the FP32 model's output (0: ground truth only)
    select: str = "y_and_rgb"      # the epoch kept: the smallest loss on PSNR-Y or RGB vs FP32, or "psnr_y": best Y
    ema: float = 0.0               # decay of an exponential moving average of the weights and ranges (0: off)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("lr", "range_lr"):
            if not 0 < getattr(self, name) <= MAX_LR:
                raise ElsrError(f"QAT {name} must be above 0 and at most {MAX_LR:g}, got {getattr(self, name)}",
                                fix=f"the default is {getattr(QATConfig, name):g}")
        if problem := luma_weight_problem(self.luma_weight):
            raise ElsrError(f"luma weight {problem}", fix="0 scores the RGB error only, 0.95 mostly luma")
        if not 0.0 <= self.ema < 1.0:
            raise ElsrError(f"ema decay must be in [0, 1), got {self.ema}", fix="e.g. 0.999; 0 turns it off")
        if self.select not in SELECTIONS:
            raise ElsrError(f"unknown QAT selection {self.select!r}", fix=f"use one of {', '.join(SELECTIONS)}")
        if not 0.0 <= self.distill <= 1.0:
            raise ElsrError(f"distill weight must be in [0, 1], got {self.distill}",
                            fix="0 trains on the HR images only, 1 on the FP32 model's outputs only")


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """Move ``ema``'s parameters towards ``model``'s; buffers (observer state) are copied."""
    for averaged, current in zip(ema.parameters(), model.parameters()):
        averaged.lerp_(current, 1.0 - decay)
    for averaged, current in zip(ema.buffers(), model.buffers()):
        averaged.copy_(current)


def _calibrated(model: ELSR, source, cfg: QATConfig, device: torch.device) -> QuantELSR:
    """The fake-quant model of ``model`` (channels equalized first, if asked) whose observers have seen
    ``cfg.calibration_batches`` batches of real patches."""
    calibration = [lr for lr, _ in source.batches(model.scale, cfg.patch_size, cfg.batch_size,
                                                  cfg.calibration_batches, (cfg.seed, 99, 0))]
    if cfg.equalize:
        model = equalize_channels(model, calibration)
    qmodel = QuantELSR(model, cfg.split).to(device).train()
    with torch.no_grad():
        for lr_batch in calibration:
            qmodel(lr_batch.to(device))
    return qmodel


def _optimizer(qmodel: QuantELSR, cfg: QATConfig) -> torch.optim.Adam:
    """Adam over the weights and, with learned ranges, the activation scales and zero points (own lr)."""
    groups = [{"params": qmodel.weight_parameters(), "base_lr": cfg.lr}]
    if cfg.learn_ranges:
        qmodel.learn_ranges()
        groups.append({"params": qmodel.range_parameters(), "base_lr": cfg.range_lr})
    return torch.optim.Adam(groups, lr=cfg.lr)


def _step_loss(qmodel: QuantELSR, teacher: ELSR | None, cfg: QATConfig, device: torch.device):
    """The loss of one QAT batch: against the HR patch, and with ``distill`` against the FP32 model's output."""
    loss_fn = loss_function(cfg.loss, cfg.luma_weight).to(device)

    def step_loss(lr_batch: torch.Tensor, hr_batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lr_batch = lr_batch.to(device)
        out = qmodel(lr_batch)
        loss = loss_fn(out, hr_batch.to(device))
        if teacher is not None:  # distillation: pull the INT8 model towards the FP32 function
            with torch.no_grad():
                target = teacher(lr_batch)
            loss = (1 - cfg.distill) * loss + cfg.distill * F.mse_loss(out, target)
        return loss, loss
    return step_loss


def _bad_loss(epoch: int):
    def error(value: float, step: int) -> ElsrError:
        return ElsrError(f"QAT loss became {value} in epoch {epoch + 1}, iteration {step + 1}", fix="lower --lr")
    return error


def train_qat(model: ELSR, source, val, cfg: QATConfig, device: torch.device,
              progress: bool = True) -> tuple[QuantELSR, list[dict]]:
    """Fine-tune ``model`` with fake quantization; returns the best fake-quant model (by ``cfg.select``, among
    the states whose ranges are final) and the per-epoch history."""
    torch.manual_seed(cfg.seed)
    teacher = copy.deepcopy(model).to(device).eval().requires_grad_(False) if cfg.distill else None
    qmodel = _calibrated(model, source, cfg, device)
    optimizer = _optimizer(qmodel, cfg)
    ema = copy.deepcopy(qmodel).requires_grad_(False) if cfg.ema else None
    step_loss = _step_loss(qmodel, teacher, cfg, device)
    freeze_at = 0 if cfg.learn_ranges else cfg.epochs - max(1, round(cfg.epochs * cfg.freeze_fraction))
    reference = validate(model.to(device), val, device) if cfg.select == "y_and_rgb" else {}
    best_state, best_score, history = None, -math.inf, []
    for epoch in range(cfg.epochs):
        if epoch == freeze_at:
            qmodel.freeze_observers()
        lr = cosine_lr(cfg.lr, cfg.lr / 10, epoch, cfg.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["base_lr"] / cfg.lr
        batches = source.batches(model.scale, cfg.patch_size, cfg.batch_size, cfg.iters_per_epoch,
                                 (cfg.seed, 100, epoch))
        losses = run_epoch(batches, step_loss, optimizer, total=cfg.iters_per_epoch,
                           desc=f"qat {epoch + 1}/{cfg.epochs}", bad_loss=_bad_loss(epoch), progress=progress,
                           after_step=None if ema is None else lambda: update_ema(ema, qmodel, cfg.ema))
        frozen = epoch >= freeze_at
        history.append({"epoch": epoch + 1, "lr": lr, "loss": float(np.mean(losses)), "frozen": frozen,
                        **validate(qmodel, val, device)})
        candidates = [("raw", _score(history[-1], reference), qmodel)]
        if ema is not None:
            history[-1].update({f"ema_{k}": v for k, v in validate(ema, val, device).items()})
            candidates.append(("ema", _score(history[-1], reference, "ema_"), ema))
        _log_epoch(history[-1], cfg)
        for kind, score, candidate in candidates:
            if frozen and score > best_score:  # only states whose ranges are final
                best_score, best_state, best = score, copy.deepcopy(candidate.state_dict()), (epoch, kind)
    qmodel.load_state_dict(best_state)
    qmodel.freeze_observers()
    history[best[0]]["selected"] = best[1]
    return qmodel.eval().cpu(), history


def _score(row: dict, reference: dict[str, float], prefix: str = "") -> float:
    """How good an epoch is: its PSNR-Y, or, given the FP32 model's scores, the smaller of its PSNR-Y and PSNR-RGB
    differences to them (colour kept as well as luma)."""
    if not reference:
        return row[prefix + "psnr_y"]
    return min(row[prefix + "psnr_y"] - reference["psnr_y"], row[prefix + "psnr_rgb"] - reference["psnr_rgb"])


def selected_metrics(history: list[dict]) -> dict[str, float]:
    """The validation scores of the state train_qat returned (the raw model's or the moving average's)."""
    row = next((r for r in history if r.get("selected")), None)
    if row is None:
        return {}
    prefix = "ema_" if row["selected"] == "ema" else ""
    return {k: row[prefix + k] for k in METRIC_KEYS if prefix + k in row}


def _log_epoch(row: dict, cfg: QATConfig) -> None:
    ranges = " (ranges learned)" if cfg.learn_ranges else " (ranges frozen)" if row["frozen"] else ""
    ema = f", EMA {row['ema_psnr_y']:.3f}" if "ema_psnr_y" in row else ""
    log.info("qat epoch %d/%d: lr %.1e loss %.5f | fake-quant val %.3f dB Y%s%s", row["epoch"], cfg.epochs, row["lr"],
             row["loss"], row["psnr_y"], ema, ranges)
