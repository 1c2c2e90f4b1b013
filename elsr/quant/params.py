"""The integer parameters of a QAT result: what every INT8 artifact (ONNX, ORT, TFLite) is built from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from elsr.model.network import ELSR, ModelConfig
from elsr.quant.fake_quant import W_QMAX, W_QMIN, QuantELSR, weight_scales


@dataclass
class ConvParams:
    weight: np.ndarray          # int8 (out, in, 3, 3)
    weight_scale: np.ndarray    # float32 (out,)
    bias: np.ndarray            # int32 (out,)
    bias_scale: np.ndarray      # float32 (out,) = input scale * weight scale

    def reordered(self, order) -> "ConvParams":
        """The same conv with its output channels in ``order`` (entry k: the channel that becomes channel k)."""
        return ConvParams(self.weight[order], self.weight_scale[order], self.bias[order], self.bias_scale[order])


@dataclass
class QuantParams:
    """Everything the integer graph needs, taken from a trained QuantELSR."""

    config: ModelConfig
    convs: dict[str, ConvParams]
    activations: dict[str, tuple[float, int]]   # name -> (scale, uint8 zero point)
    slope: np.ndarray                            # PReLU slope(s), float32


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
        convs[name] = ConvParams(
            weight=torch.clamp(torch.round(layer.weight / w_scale[:, None, None, None]), W_QMIN, W_QMAX)
            .to(torch.int8).numpy(),
            weight_scale=w_scale.numpy().astype(np.float32),
            bias=torch.round(layer.bias / b_scale).to(torch.int32).numpy(),
            bias_scale=b_scale.numpy().astype(np.float32))
    activations = {name: quant.qparams() for name, quant in model.quant.items()}
    return QuantParams(model.config, convs, activations, model.body_act.weight.detach().float().numpy().copy())


def qat_model_from_params(params: QuantParams) -> QuantELSR:
    """A frozen fake-quant model computing what ``params`` describe (weights = int8 x scale, observer ranges
    giving the same scales and zero points): the reference the INT8 artifacts are checked against."""
    model = ELSR(params.config)
    with torch.no_grad():
        for name, conv in params.convs.items():
            weight = conv.weight.astype(np.float32) * conv.weight_scale[:, None, None, None]
            bias = conv.bias.astype(np.float64) * conv.bias_scale
            getattr(model, name).weight.copy_(torch.from_numpy(weight))
            getattr(model, name).bias.copy_(torch.from_numpy(bias.astype(np.float32)))
        model.body_act.weight.copy_(torch.from_numpy(params.slope.reshape(-1)))
    qmodel = QuantELSR(model)
    for name, quant in qmodel.quant.items():
        q_scale, zero_point = params.activations[name]
        # float64 range ends, so (max - min) / 255 gives the stored scale back to the last bit
        quant.min_val = torch.tensor(-zero_point * q_scale, dtype=torch.float64)
        quant.max_val = torch.tensor((255 - zero_point) * q_scale, dtype=torch.float64)
        quant.initialised.fill_(True)
    qmodel.freeze_observers()
    return qmodel.eval()
