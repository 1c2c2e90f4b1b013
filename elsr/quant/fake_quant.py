"""Fake quantization of ELSR at exactly the points where the fully integer INT8 graph quantizes.

The fake-quant model mirrors, tensor for tensor, the QDQ ONNX graph that ``elsr.export.onnx_int8``
builds (and the TFLite graph of ``elsr.export.tflite``), so what QAT trains is what the runtimes run:

- input and output on the uint8 pixel grid (scale 1/255, zero point 0): both ends are lossless,
  and the output is clipped to [0, 1] for free (the field rounds outputs to uint8 anyway);
- weights: per-channel symmetric int8; biases: int32 with scale input_scale * weight_scale;
- activations: per-tensor uint8 with min/max observers (EMA), frozen for the last epochs;
- the shared PReLU slope runs as LeakyRelu, which has an integer kernel in onnxruntime;
- ``split``: the skip path (the head's output, body_conv2's output and their sum) carries each hidden channel as
  two int8 channels, each holding half the value, offset by plus and minus a quarter of a quantization step.
  Their rounding errors then differ and the sum of the two copies has steps half as large: one more bit where
  the noise costs most, for twice the channels on that path (zero padding that the INT8 ONNX graph has anyway).
  The consumers add the copies back (body_conv1 and tail take both); the offsets are integer biases that cancel
  in the sum.
- on a split graph the weights get one more bit too, at no cost: every conv that makes or takes the copies holds
  two int8 weights per float weight (one per copy), ``ceil(n / 2)`` and ``floor(n / 2)`` of its ``n`` half
  steps, ``n = round(2 w / step)`` in [-254, 254]. Made into copies (head, body_conv2) they add up to the weight
  on a grid of half a step; taking the copies (body_conv1, tail) they act on two near-equal halves of one
  tensor, so the conv applies the mean of the two, the same half-step weight.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from elsr.model.network import ELSR, ModelConfig

ACT_QMIN, ACT_QMAX = 0, 255     # uint8 activations
W_QMIN, W_QMAX = -128, 127      # int8 weights; symmetric scales use +-127
PIXEL_RANGE = (0.0, 1.0)        # input/output range: scale 1/255, zero point 0
OBSERVED = ("head", "body_conv1", "body_act", "body_conv2", "add")  # activations with learned ranges
SPLIT = ("head", "body_conv2", "add")   # the tensors a split graph carries as two offset copies
COPIES = 2                              # channels per hidden channel there


def split_offset_levels(offset: float, in_scale: float, w_scales) -> np.ndarray:
    """The copies' integer bias offsets (per output channel) for an ``offset`` of the copies' values: in units of
    the copies' bias scale, in_scale x w_scale / 2 (the copies' weights are halved by halving their scales).
    Computed in float64 from the stored float32 scales: the fake-quant model and every exporter agree bit for bit."""
    copy_bias_scale = np.float64(in_scale) * np.asarray(w_scales, np.float64) / COPIES
    return np.round(np.float64(offset) / copy_bias_scale).astype(np.int64)


def split_offsets(head_scale: float, add_scale: float) -> dict[str, float]:
    """The value offsets of the split convs' copies: the head's copies +-1/4 of its step; body_conv2's chosen
    so that the sums, the residual add's copies, are offset by +-1/4 of the add's step."""
    return {"head": head_scale / 4, "body_conv2": (add_scale - head_scale) / 4}


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even, with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


class ActFakeQuant(nn.Module):
    """Per-tensor uint8 fake quantization.

    The range comes from an EMA min/max observer, or is fixed; after ``learn_range()`` the scale
    and zero point are trained with the network (LSQ, Esser et al. 2020): a learned range can clip
    rare outliers to get finer steps where the values are.
    """

    def __init__(self, fixed: tuple[float, float] | None = None, momentum: float = 0.01) -> None:
        super().__init__()
        self.momentum = momentum
        lo, hi = fixed or (0.0, 0.0)
        self.register_buffer("min_val", torch.tensor(lo))
        self.register_buffer("max_val", torch.tensor(hi))
        self.register_buffer("initialised", torch.tensor(fixed is not None))
        self.register_buffer("frozen", torch.tensor(fixed is not None))
        self.register_buffer("learned", torch.tensor(False))
        self.log_scale = nn.Parameter(torch.zeros(()))   # trained only once learned
        self.zero_point = nn.Parameter(torch.zeros(()))  # in levels; used rounded

    def observed_qparams(self) -> tuple[float, int]:
        """(scale, zero point) of the observed range; the range always holds 0 so zero padding stays exact."""
        lo = min(float(self.min_val), 0.0)
        hi = max(float(self.max_val), 0.0)
        scale = max((hi - lo) / (ACT_QMAX - ACT_QMIN), 1e-8)
        zero_point = int(np.clip(round(ACT_QMIN - lo / scale), ACT_QMIN, ACT_QMAX))
        return scale, zero_point

    def qparams(self) -> tuple[float, int]:
        """(scale, zero point) the integer graph uses."""
        if bool(self.learned):
            zero_point = int(np.clip(torch.round(self.zero_point.detach()).item(), ACT_QMIN, ACT_QMAX))
            return float(self.log_scale.detach().exp()), zero_point
        return self.observed_qparams()

    @torch.no_grad()
    def learn_range(self) -> None:
        """Start training scale and zero point from the observed range (observer off from now on)."""
        scale, zero_point = self.observed_qparams()
        self.log_scale.fill_(math.log(scale))
        self.zero_point.fill_(float(zero_point))
        self.learned.fill_(True)
        self.frozen.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(self.learned):
            scale = self.log_scale.exp()
            zero_point = torch.clamp(round_ste(self.zero_point), ACT_QMIN, ACT_QMAX)
            levels = torch.clamp(round_ste(x / scale) + zero_point, ACT_QMIN, ACT_QMAX)
            return (levels - zero_point) * scale
        if self.training and not bool(self.frozen):
            lo, hi = x.detach().min(), x.detach().max()
            if not bool(self.initialised):
                self.min_val.copy_(lo)
                self.max_val.copy_(hi)
                self.initialised.fill_(True)
            else:
                self.min_val.lerp_(lo, self.momentum)
                self.max_val.lerp_(hi, self.momentum)
        scale, zero_point = self.qparams()
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, ACT_QMIN, ACT_QMAX)


def weight_scales(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 scales."""
    return weight.detach().abs().amax(dim=(1, 2, 3)).clamp_min(1e-8) / W_QMAX


def half_step_weights(weight: torch.Tensor, scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two int8 weights a split graph holds per float weight, in steps of ``scales`` (per output channel):
    ``ceil(n / 2)`` and ``floor(n / 2)`` of its ``n = round(2 weight / step)`` half steps (straight-through
    gradients, half of ``n``'s to each)."""
    steps = scales.reshape(-1, *([1] * (weight.dim() - 1)))
    halves = torch.clamp(round_ste(2 * weight / steps), -2 * W_QMAX, 2 * W_QMAX)
    lower = halves / 2 + (torch.floor(halves.detach() / 2) - halves.detach() / 2)
    return halves - lower, lower


def fake_quant_weight(weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    zeros = torch.zeros_like(scales, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scales, zeros, 0, W_QMIN, W_QMAX)


def fake_quant_bias(bias: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """int32 bias on the grid input_scale * weight_scale (straight-through gradient)."""
    return bias + (torch.round(bias / scales) * scales - bias).detach()


class QuantELSR(nn.Module):
    """ELSR with fake quantization at exactly the points where the INT8 graph quantizes (with ``split``: the
    skip path as two offset copies, see the module's docstring)."""

    def __init__(self, model: ELSR, split: bool = False) -> None:
        super().__init__()
        self.config: ModelConfig = model.config
        self.split = split
        self.head = copy.deepcopy(model.head)
        self.body_conv1 = copy.deepcopy(model.body_conv1)
        self.body_act = copy.deepcopy(model.body_act)
        self.body_conv2 = copy.deepcopy(model.body_conv2)
        self.tail = copy.deepcopy(model.tail)
        self.upsample = nn.PixelShuffle(self.config.scale)
        self.quant = nn.ModuleDict({"input": ActFakeQuant(PIXEL_RANGE), "tail": ActFakeQuant(PIXEL_RANGE),
                                    **{name: ActFakeQuant() for name in OBSERVED}})

    @property
    def scale(self) -> int:
        return self.config.scale

    def freeze_observers(self) -> None:
        for quant in self.quant.values():
            quant.frozen.fill_(True)

    def learn_ranges(self) -> None:
        """Train the observed activation ranges from now on (the pixel-grid ends stay fixed)."""
        for name in OBSERVED:
            self.quant[name].learn_range()

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("quant.")]

    def range_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n.startswith("quant.")]

    def _steps_and_bias(self, layer: nn.Conv2d, input_quant: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's per-channel int8 weight steps and its bias on the int32 grid input step x weight step."""
        w_scales = weight_scales(layer.weight)
        return w_scales, fake_quant_bias(layer.bias, self.quant[input_quant].qparams()[0] * w_scales)

    def _conv(self, layer: nn.Conv2d, x: torch.Tensor, input_quant: str) -> torch.Tensor:
        w_scales, bias = self._steps_and_bias(layer, input_quant)
        return F.conv2d(x, fake_quant_weight(layer.weight, w_scales), bias, padding=1)

    def _output_copies(self, layer: nn.Conv2d, x: torch.Tensor, name: str, input_quant: str,
                       offset: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The two quantized copies of a split conv's output: each from its own int8 weights (half_step_weights) at
        half the step, with half the bias plus and minus the offset rounded to the copies' integer bias grid."""
        w_scales, bias = self._steps_and_bias(layer, input_quant)
        in_scale = self.quant[input_quant].qparams()[0]
        scales = w_scales.detach().cpu().numpy()
        levels = split_offset_levels(offset, in_scale, scales)
        shift = torch.from_numpy(levels * (np.float64(in_scale) * scales.astype(np.float64) / COPIES))
        shift = shift.to(x.dtype).to(x.device)
        steps = (w_scales / COPIES)[:, None, None, None]
        upper, lower = half_step_weights(layer.weight, w_scales)
        half_bias = bias / COPIES
        return (self.quant[name](F.conv2d(x, upper * steps, half_bias + shift, padding=1)),
                self.quant[name](F.conv2d(x, lower * steps, half_bias - shift, padding=1)))

    def _input_copies(self, layer: nn.Conv2d, copies: tuple[torch.Tensor, torch.Tensor],
                      input_quant: str) -> torch.Tensor:
        """A conv taking the two copies of its input, each with its own int8 weights (half_step_weights)."""
        w_scales, bias = self._steps_and_bias(layer, input_quant)
        steps = w_scales[:, None, None, None]
        upper, lower = half_step_weights(layer.weight, w_scales)
        return F.conv2d(copies[0], upper * steps, bias, padding=1) + F.conv2d(copies[1], lower * steps, padding=1)

    def _split_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """head, body_conv1, body_act, body_conv2, add (as the sums of the copies the integer graph holds) and tail."""
        q = self.quant
        offsets = split_offsets(q["head"].qparams()[0], q["add"].qparams()[0])
        heads = self._output_copies(self.head, x, "head", "input", offsets["head"])
        c1 = q["body_conv1"](self._input_copies(self.body_conv1, heads, "head"))
        act = q["body_act"](self.body_act(c1))
        c2s = self._output_copies(self.body_conv2, act, "body_conv2", "body_act", offsets["body_conv2"])
        adds = (q["add"](heads[0] + c2s[0]), q["add"](heads[1] + c2s[1]))
        tail = q["tail"](self._input_copies(self.tail, adds, "add"))
        return heads[0] + heads[1], c1, act, c2s[0] + c2s[1], adds[0] + adds[1], tail

    def forward(self, x: torch.Tensor, taps: dict | None = None) -> torch.Tensor:
        q = self.quant
        x = q["input"](x)
        if self.split:
            head, c1, act, c2, added, tail = self._split_forward(x)
        else:
            head = q["head"](self._conv(self.head, x, "input"))
            c1 = q["body_conv1"](self._conv(self.body_conv1, head, "head"))
            act = q["body_act"](self.body_act(c1))
            c2 = q["body_conv2"](self._conv(self.body_conv2, act, "body_act"))
            added = q["add"](head + c2)
            tail = q["tail"](self._conv(self.tail, added, "add"))
        if taps is not None:
            taps.update(head=head, body_conv1=c1, body_act=act, body_conv2=c2, add=added, tail=tail)
        return self.upsample(tail)

    def to_float(self) -> ELSR:
        """The underlying float weights as a plain ELSR (no quantization)."""
        model = ELSR(self.config)
        model.load_state_dict({k: v for k, v in self.state_dict().items() if not k.startswith("quant.")})
        return model.eval()


def float_taps(model: ELSR, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The FP32 model's tensors at the points QuantELSR quantizes (for per-layer error reports)."""
    head = model.head(x)
    c1 = model.body_conv1(head)
    act = model.body_act(c1)
    c2 = model.body_conv2(act)
    added = head + c2
    return {"head": head, "body_conv1": c1, "body_act": act, "body_conv2": c2, "add": added,
            "tail": model.tail(added)}
