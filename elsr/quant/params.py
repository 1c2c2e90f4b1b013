"""The integer parameters of a QAT result: what every INT8 artifact (ONNX, ORT, TFLite) is built from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from elsr.model.network import ELSR, ModelConfig
from elsr.quant.fake_quant import (COPIES, SPLIT, W_QMAX, W_QMIN, QuantELSR, half_step_weights, split_offset_levels,
                                   split_offsets, weight_scales)


@dataclass
class ConvParams:
    weight: np.ndarray          # int8 (out, in, 3, 3)
    weight_scale: np.ndarray    # float32 (out,)
    bias: np.ndarray            # int32 (out,)
    bias_scale: np.ndarray      # float32 (out,) = input scale * weight scale
    half_step: np.ndarray | None = None  # split graphs: 0/1 (int8, as weight): the weight is weight + half_step / 2
                                         # steps, held as two int8 copies, weight + half_step and weight

    def reordered(self, order) -> "ConvParams":
        """The same conv with its output channels in ``order`` (entry k: the channel that becomes channel k)."""
        half = None if self.half_step is None else self.half_step[order]
        return ConvParams(self.weight[order], self.weight_scale[order], self.bias[order], self.bias_scale[order], half)

    def copy_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """The int8 weights of the two copies: ``weight + half_step`` (the first) and ``weight``."""
        half = np.zeros_like(self.weight) if self.half_step is None else self.half_step
        return (self.weight.astype(np.int16) + half).astype(np.int8), self.weight


@dataclass
class QuantParams:
    """Everything the integer graph needs, taken from a trained QuantELSR."""

    config: ModelConfig
    convs: dict[str, ConvParams]
    activations: dict[str, tuple[float, int]]   # name -> (scale, uint8 zero point)
    slope: np.ndarray                            # PReLU slope(s), float32
    split: bool = False                          # the skip path as two offset copies (elsr.quant.fake_quant)

    @property
    def copies(self) -> int:
        return COPIES if self.split else 1

    def channels(self) -> dict[str, int]:
        """Channels of each tensor of the integer graph: the hidden ones, twice over on a split skip path."""
        c, scale = self.config.channels, self.config.scale
        return {"input": 3, **{name: c * (self.copies if name in SPLIT else 1) for name in
                               ("head", "body_conv1", "body_act", "body_conv2", "add")}, "tail": 3 * scale * scale}

    def integer_convs(self) -> dict[str, ConvParams]:
        """The convs as the integer graph holds them: ``convs`` itself, or with ``split`` the copies: head and
        body_conv2 give each output channel twice (weights halved through their scales, biases offset by
        +-split_offset_levels), body_conv1 and tail take each input channel twice; each copy has its own int8
        weights (ConvParams.copy_weights)."""
        if not self.split:
            return dict(self.convs)
        act, convs = self.activations, self.convs
        offsets = split_offsets(act["head"][0], act["add"][0])
        inputs = {"head": "input", "body_conv2": "body_act"}
        expanded = {name: _output_copies(convs[name], split_offset_levels(offsets[name], act[inputs[name]][0],
                                                                          convs[name].weight_scale))
                    for name in inputs}
        expanded.update({name: _input_copies(convs[name]) for name in ("body_conv1", "tail")})
        return expanded


def _output_copies(conv: ConvParams, levels: np.ndarray) -> ConvParams:
    """Each output channel twice: the copies' int8 weights at half the scale (adding up to the weight), the int32
    bias plus ``levels`` for the first copies and minus for the second (bias scale halved with the weights)."""
    bias = conv.bias.astype(np.int64)
    biases = np.concatenate([bias + levels, bias - levels])
    if np.abs(biases).max() >= 2 ** 31:
        raise ValueError("split bias offset outside int32")
    return ConvParams(weight=np.concatenate(conv.copy_weights()),
                      weight_scale=np.tile(conv.weight_scale / np.float32(COPIES), COPIES),
                      bias=biases.astype(np.int32), bias_scale=np.tile(conv.bias_scale / np.float32(COPIES), COPIES))


def _input_copies(conv: ConvParams) -> ConvParams:
    """The conv taking each input channel twice (the two copies), each copy with its own int8 weights."""
    return ConvParams(np.concatenate(conv.copy_weights(), axis=1), conv.weight_scale, conv.bias, conv.bias_scale)


def fold_copies(convs: dict[str, ConvParams], activations: dict[str, tuple[float, int]],
                channels: int) -> dict[str, ConvParams]:
    """The unsplit convs of a split graph's ``convs`` (the inverse of QuantParams.integer_convs). Files from before
    the copies had weights of their own hold the same weights twice: their half steps are 0."""
    c = channels
    folded = {name: ConvParams(conv.weight[c:2 * c], conv.weight_scale[:c] * np.float32(COPIES),
                               ((conv.bias[:c].astype(np.int64) + conv.bias[c:2 * c]) // 2).astype(np.int32),
                               conv.bias_scale[:c] * np.float32(COPIES),
                               _half_steps(conv.weight[:c], conv.weight[c:2 * c]))
              for name, conv in convs.items() if name in ("head", "body_conv2")}
    folded.update({name: ConvParams(conv.weight[:, c:2 * c], conv.weight_scale, conv.bias, conv.bias_scale,
                                    _half_steps(conv.weight[:, :c], conv.weight[:, c:2 * c]))
                   for name, conv in convs.items() if name in ("body_conv1", "tail")})
    return folded


def _half_steps(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The first copy's weights minus the second's: 0 or 1 in every graph elsr writes."""
    half = first.astype(np.int16) - second
    if half.min(initial=0) < 0 or half.max(initial=0) > 1:
        raise ValueError("the copies' weights differ by more than a half step")
    return half.astype(np.int8)


@torch.no_grad()
def quant_params(model: QuantELSR) -> QuantParams:
    """The integer weights, biases, activation ranges and slope of a trained fake-quant model."""
    inputs = {"head": "input", "body_conv1": "head", "body_conv2": "body_act", "tail": "add"}
    convs = {}
    for name, source in inputs.items():
        layer: nn.Conv2d = getattr(model, name)
        w_scale = weight_scales(layer.weight).float()
        in_scale = np.float32(model.quant[source].qparams()[0])
        b_scale = (w_scale * torch.tensor(in_scale)).float()
        if model.split:  # two int8 weights per weight, one per copy: weight + half_step and weight
            upper, lower = half_step_weights(layer.weight, w_scale)
            weight, half = lower.to(torch.int8).numpy(), (upper - lower).to(torch.int8).numpy()
        else:
            weight = torch.clamp(torch.round(layer.weight / w_scale[:, None, None, None]), W_QMIN, W_QMAX)
            weight, half = weight.to(torch.int8).numpy(), None
        convs[name] = ConvParams(weight=weight, weight_scale=w_scale.numpy().astype(np.float32),
                                 bias=torch.round(layer.bias / b_scale).to(torch.int32).numpy(),
                                 bias_scale=b_scale.numpy().astype(np.float32), half_step=half)
    activations = {name: quant.qparams() for name, quant in model.quant.items()}
    return QuantParams(model.config, convs, activations, model.body_act.weight.detach().float().numpy().copy(),
                       model.split)


def qat_model_from_params(params: QuantParams) -> QuantELSR:
    """A frozen fake-quant model computing what ``params`` describe (weights = int8 x scale, observer ranges
    giving the same scales and zero points): the reference the INT8 artifacts are checked against."""
    model = ELSR(params.config)
    with torch.no_grad():
        for name, conv in params.convs.items():
            steps = conv.weight.astype(np.float32) + (0 if conv.half_step is None else conv.half_step / np.float32(2))
            weight = steps * conv.weight_scale[:, None, None, None]
            bias = conv.bias.astype(np.float64) * conv.bias_scale
            getattr(model, name).weight.copy_(torch.from_numpy(weight))
            getattr(model, name).bias.copy_(torch.from_numpy(bias.astype(np.float32)))
        model.body_act.weight.copy_(torch.from_numpy(params.slope.reshape(-1)))
    qmodel = QuantELSR(model, params.split)
    for name, quant in qmodel.quant.items():
        q_scale, zero_point = params.activations[name]
        # float64 range ends, so (max - min) / 255 gives the stored scale back to the last bit
        quant.min_val = torch.tensor(-zero_point * q_scale, dtype=torch.float64)
        quant.max_val = torch.tensor((255 - zero_point) * q_scale, dtype=torch.float64)
        quant.initialised.fill_(True)
    qmodel.freeze_observers()
    return qmodel.eval()
