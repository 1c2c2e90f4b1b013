"""Training losses: L1 or MSE, optionally with a share of the loss on the BT.601 luma error."""

from __future__ import annotations

import torch
from torch import nn

from elsr.data.metrics import BT601_Y

LOSSES = ("l1", "mse")


class LumaWeightedLoss(nn.Module):
    """L1 or MSE with a share ``luma_weight`` on the BT.601 luma of the error (what PSNR-Y scores)
    and the rest on the RGB error. The luma weights are normalised to sum to 1, so a grey error of
    e counts e in both parts."""

    def __init__(self, name: str, luma_weight: float) -> None:
        super().__init__()
        self.base = nn.L1Loss() if name == "l1" else nn.MSELoss()
        self.luma_weight = luma_weight
        weights = torch.tensor(BT601_Y, dtype=torch.float32)
        self.register_buffer("luma", (weights / weights.sum()).view(1, 3, 1, 1), persistent=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        rgb = self.base(pred, target)
        if not self.luma_weight:
            return rgb
        luma = self.luma.to(pred)
        y = self.base((pred * luma).sum(1), (target * luma).sum(1))
        return (1.0 - self.luma_weight) * rgb + self.luma_weight * y


def loss_function(name: str, luma_weight: float = 0.0) -> nn.Module:
    """The loss a stage (or QAT) names: ``l1`` or ``mse``, with ``luma_weight`` of it on the luma error."""
    return LumaWeightedLoss(name, luma_weight)


