"""Cross-layer equalization of ELSR's hidden channels before QAT (Nagel et al. 2019)."""

from __future__ import annotations

import copy

import torch

from elsr.model.network import ELSR
from elsr.quant.fake_quant import float_taps


@torch.no_grad()
def equalize_channels(model: ELSR, batches) -> ELSR:
    """Rescale hidden channels so that each spans about the same range (cross-layer equalization,
    Nagel et al. 2019): per-tensor uint8 steps then fit every channel, not only the widest one.

    The function of the network is unchanged: ELSR is linear up to the PReLU, which commutes with
    positive per-channel factors. One factor per channel is shared by head, body_conv2 and their
    sum (the skip adds them), another by body_conv1 and the PReLU. ``batches``: LR input tensors.
    """
    out = copy.deepcopy(model).cpu().eval()
    taps = [float_taps(out, x.cpu()) for x in batches]

    def spread(name: str) -> torch.Tensor:
        t = torch.cat([tap[name].transpose(0, 1).flatten(1) for tap in taps], dim=1)
        return (t.amax(dim=1) - t.amin(dim=1)).clamp_min(1e-6)

    def factors(*names: str) -> torch.Tensor:
        """Per channel: geometric mean over ``names`` of (widest channel's spread / this one's)."""
        logs = [torch.log(spread(n).max() / spread(n)) for n in names]
        return torch.exp(torch.stack(logs).mean(0))

    skip, body = factors("head", "body_conv2", "add"), factors("body_conv1")
    for layer, out_factor, in_factor in ((out.head, skip, None), (out.body_conv1, body, skip),
                                         (out.body_conv2, skip, body), (out.tail, None, skip)):
        if out_factor is not None:
            layer.weight.mul_(out_factor[:, None, None, None])
            layer.bias.mul_(out_factor)
        if in_factor is not None:
            layer.weight.div_(in_factor[None, :, None, None])
    return out
