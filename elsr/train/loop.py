"""The epoch loop that both the staged trainer and QAT run, and the validation between epochs.

One epoch: every batch through the caller's loss, a stop with one clear line the moment the loss is
not finite, backward, an optimizer step, a progress bar with the running loss.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from elsr.data.metrics import image_metrics, mean_metrics
from elsr.data.validation import ValidationSet
from elsr.errors import ElsrError
from elsr.model.inference import super_resolve

POSTFIX_EVERY = 20   # steps between updates of the progress bar's running loss
RUNNING_LOSS = 50    # steps the running loss averages

# (LR batch, HR batch) -> (the loss to backpropagate, the loss to report: the mean over all ranks)
StepLoss = Callable[[Any, Any], tuple[torch.Tensor, torch.Tensor]]
BadLoss = Callable[[float, int], ElsrError]   # (the loss, the 0-based step) -> the error that stops training


def run_epoch(batches: Iterable[tuple[Any, Any]], step_loss: StepLoss, optimizer: torch.optim.Optimizer, *,
              total: int, desc: str, bad_loss: BadLoss, progress: bool = True,
              scaler: torch.amp.GradScaler | None = None,
              after_step: Callable[[], None] | None = None) -> list[float]:
    """Train one epoch over ``batches``; returns the reported loss of every step.

    ``scaler`` scales fp16 losses (mixed precision); ``after_step`` runs after each optimizer step
    (a moving average of the weights, say).
    """
    bar = tqdm(batches, total=total, desc=desc, unit="it", leave=False, disable=None if progress else True,
               dynamic_ncols=True)
    losses: list[float] = []
    for step, (lr_batch, hr_batch) in enumerate(bar):
        loss, reported = step_loss(lr_batch, hr_batch)
        if not torch.isfinite(reported):
            raise bad_loss(reported.item(), step)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        if after_step is not None:
            after_step()
        losses.append(reported.item())
        if step % POSTFIX_EVERY == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-RUNNING_LOSS:]):.4f}")
    return losses


def validate(model: nn.Module, val: ValidationSet, device: torch.device) -> dict[str, float]:
    """Mean PSNR/SSIM (RGB and Y, border = scale) of ``model`` (any module with a ``scale``) on the
    validation images; the model is back in training mode afterwards."""
    model.eval()
    rows = [image_metrics(super_resolve(model, item.lr, device), item.hr, model.scale)
            for item in val.for_scale(model.scale)]
    model.train()
    return mean_metrics(rows)
