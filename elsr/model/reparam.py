"""Re-parameterised 3x3 convolution for training, folded into one plain conv for inference.

In the spirit of ECBSR's edge-oriented block (Zhang et al., ACM MM 2021): during training a 3x3
conv is the sum of linear branches - a 3x3 conv, a 1x1 conv, a 1x1 expansion followed by a 3x3
conv, 1x1 convs followed by scaled Sobel-x, Sobel-y and Laplacian filters, and the identity
where input and output widths match. All branches are linear, so their sum is one 3x3 kernel and
bias. Here that kernel is computed from the branch parameters on every forward pass and applied
as a single convolution ("online" re-parameterisation): the network computes exactly what the
folded inference model computes, the branches only change how gradient descent moves the
weights, and a training step costs about the same as with the plain conv.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EXPANSION = 2  # width of the 1x1 -> 3x3 branch, in multiples of the output width
_EDGE_FILTERS = torch.tensor([
    [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],   # Sobel-x
    [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]],   # Sobel-y
    [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],     # Laplacian
])


class RepConv3x3(nn.Module):
    """A 3x3 conv (padding 1) trained through linear branches; ``fold()`` gives its kernel and bias.

    ``weight`` and ``bias`` are the plain 3x3 branch, named like ``nn.Conv2d``'s; ``load_plain``
    starts the module from a plain conv without changing its function.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        mid = EXPANSION * out_channels
        plain = nn.Conv2d(in_channels, out_channels, 3)  # PyTorch's default initialisation
        self.weight = nn.Parameter(plain.weight.detach().clone())
        self.bias = nn.Parameter(plain.bias.detach().clone())
        # each random branch starts with the spread of PyTorch's default 3x3 kernel, std (27 in)^-1/2
        self.point = nn.Parameter(torch.randn(out_channels, in_channels) * (27 * in_channels) ** -0.5)
        self.expand = nn.Parameter(torch.randn(mid, in_channels) * in_channels ** -0.5)
        self.expand_bias = nn.Parameter(torch.zeros(mid))
        self.spatial = nn.Parameter(torch.randn(out_channels, mid, 3, 3) * (27 * mid) ** -0.5)
        self.edge_point = nn.Parameter(torch.randn(3, out_channels, in_channels) * in_channels ** -0.5)
        self.edge_scale = nn.Parameter(torch.randn(3, out_channels) * 1e-3)
        self.edge_bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("edge_filters", _EDGE_FILTERS.clone(), persistent=False)
        self.identity = in_channels == out_channels

    @torch.no_grad()
    def load_plain(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Take a plain conv's kernel and bias: the other branches start at zero (gradients still
        flow, as one factor of each product branch stays random), so ``fold()`` returns them."""
        self.point.zero_()
        self.spatial.zero_()
        self.expand_bias.zero_()
        self.edge_scale.zero_()
        self.edge_bias.zero_()
        self.weight.copy_(weight)
        self.bias.copy_(bias)
        if self.identity:  # the identity branch is always on: take it out of the 3x3 kernel
            self.weight[:, :, 1, 1] -= torch.eye(self.out_channels, dtype=weight.dtype, device=weight.device)

    def fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single (out, in, 3, 3) kernel and (out,) bias equal to the sum of the branches."""
        weight = self.weight + F.pad(self.point[:, :, None, None], (1, 1, 1, 1))
        weight = weight + torch.einsum("omhw,mi->oihw", self.spatial, self.expand)
        bias = self.bias + torch.einsum("omhw,m->o", self.spatial, self.expand_bias)
        edges = self.edge_scale[:, :, None, None] * self.edge_filters[:, None]    # (3, out, 3, 3)
        weight = weight + torch.einsum("eohw,eoi->oihw", edges, self.edge_point)
        bias = bias + self.edge_bias  # the edge filters sum to zero, so their inputs' bias vanishes
        if self.identity:
            weight = weight + F.pad(torch.eye(self.out_channels)[:, :, None, None].to(weight), (1, 1, 1, 1))
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.fold()
        return F.conv2d(x, weight, bias, padding=1)

    def to_conv(self) -> nn.Conv2d:
        """The equivalent plain ``nn.Conv2d``."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, kernel_size=3, padding=1)
        weight, bias = self.fold()
        conv.weight.data.copy_(weight.detach())
        conv.bias.data.copy_(bias.detach())
        return conv.to(weight.device)
