"""The ELSR network (arXiv 2208.14600): five layers, about 3.5K parameters at x4.

conv3x3 3->C, residual block [conv3x3 C->C, PReLU, conv3x3 C->C] + skip, conv3x3 C->3*s^2,
PixelShuffle(s). Input and output are float NCHW RGB in [0, 1].
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch
from torch import nn

from elsr.errors import ElsrError
from elsr.model.reparam import RepConv3x3

log = logging.getLogger(__name__)

SCALES = (2, 3, 4)
RECEPTIVE_RADIUS = 4  # four 3x3 convs: an output pixel sees 4 LR pixels around its own
MIN_LR_SIDE = 2 * RECEPTIVE_RADIUS + 1  # a smaller LR image is all border: no output pixel sees real context
PRELU_MODES = ("shared", "channel")
IN_CHANNELS = 3
DEFAULT_FRAME = (180, 320)  # LR height x width of one REDS x4 input frame: the challenge's 30 fps target
PAPER_CHANNELS = 6  # the paper's hidden channels: the default size (wider ones: the size ladder)
MAX_CHANNELS = 256  # the widest network config_from_parameters looks for
CONV_NAMES = ("head", "body_conv1", "body_conv2", "tail")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an ELSR network; stored in every checkpoint."""

    scale: int = 4
    channels: int = PAPER_CHANNELS
    prelu: str = "shared"  # one slope for all channels (== LeakyRelu), or one per channel

    def __post_init__(self) -> None:
        if not isinstance(self.scale, int) or self.scale not in SCALES:
            raise ElsrError(f"unsupported scale x{self.scale}", fix=f"use one of {SCALES}")
        if not isinstance(self.channels, int) or not 1 <= self.channels <= MAX_CHANNELS:
            raise ElsrError(f"channels must be an integer from 1 to {MAX_CHANNELS}, got {self.channels!r}")
        if self.prelu not in PRELU_MODES:
            raise ElsrError(f"unknown prelu mode {self.prelu!r}", fix=f"use one of {PRELU_MODES}")

    def to_dict(self) -> dict:
        return {"name": "elsr", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        fields = {k: v for k, v in data.items() if k != "name"}
        if data.get("name", "elsr") != "elsr":
            raise ElsrError(f"checkpoint holds a {data.get('name')!r} model, not ELSR")
        try:
            return cls(**fields)
        except TypeError as exc:
            raise ElsrError(f"checkpoint architecture not understood: {exc}") from exc


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


class ELSR(nn.Module):
    """ELSR super-resolution network.

    ``reparam=True`` builds the training-time form whose convs are :class:`RepConv3x3` branch
    sums; ``fold()`` turns it into the plain network with identical outputs.
    """

    def __init__(self, config: ModelConfig | None = None, reparam: bool = False, **kwargs) -> None:
        super().__init__()
        self.config = config or ModelConfig(**kwargs)
        self.reparam = reparam
        c, s = self.config.channels, self.config.scale
        conv = RepConv3x3 if reparam else conv3x3
        self.head = conv(IN_CHANNELS, c)
        self.body_conv1 = conv(c, c)
        self.body_act = nn.PReLU(num_parameters=1 if self.config.prelu == "shared" else c)
        self.body_conv2 = conv(c, c)
        self.tail = conv(c, IN_CHANNELS * s * s)
        self.upsample = nn.PixelShuffle(s)

    @property
    def scale(self) -> int:
        return self.config.scale

    def fold(self) -> "ELSR":
        """The plain (inference) network computing the same function; ``self`` when already plain."""
        if not self.reparam:
            return self
        plain = ELSR(self.config)
        for name in CONV_NAMES:
            setattr(plain, name, getattr(self, name).to_conv())
        plain.body_act.load_state_dict(self.body_act.state_dict())
        return plain.to(self.head.weight.device).train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        feat = feat + self.body_conv2(self.body_act(self.body_conv1(feat)))
        return self.upsample(self.tail(feat))


def dcr_order(scale: int, channels: int = IN_CHANNELS) -> list[int]:
    """The tail conv's output channels in the order a DCR DepthToSpace reads them: entry k is the PyTorch
    channel that DCR channel k must hold.

    PixelShuffle (DepthToSpace in CRD mode) takes colour c at sub-pixel (i, j) from channel c*s*s + i*s + j;
    DCR mode (TFLite's only mode, the only one NNAPI and CoreML's NeuralNetwork take) from (i*s + j)*C + c. A
    tail conv whose output channels are permuted so gives, through DCR, exactly the pixels of PixelShuffle.
    """
    return [c * scale * scale + i * scale + j for i in range(scale) for j in range(scale) for c in range(channels)]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameters_of(config: ModelConfig) -> int:
    """The parameter count of the network ``config`` describes (what count_parameters gives), without building it."""
    c, s = config.channels, config.scale
    convs = (IN_CHANNELS * c + c * c + c * c + c * IN_CHANNELS * s * s) * 9
    biases = c + c + c + IN_CHANNELS * s * s
    return convs + biases + (1 if config.prelu == "shared" else c)


def config_from_parameters(scale: int, parameters: int, prelu: str | None = None) -> ModelConfig | None:
    """The ELSR architecture of ``scale`` with exactly ``parameters`` parameters (and the PReLU mode, when
    given), or None: how a model file without a stored architecture (ONNX, TFLite) is recognised."""
    if scale not in SCALES:
        return None
    for channels in range(1, MAX_CHANNELS + 1):
        for mode in (prelu,) if prelu else PRELU_MODES:
            config = ModelConfig(scale=scale, channels=channels, prelu=mode)
            if parameters_of(config) == parameters:
                return config
    return None


def macs_per_frame(config: ModelConfig, height: int, width: int) -> int:
    """Multiply-accumulates of the convolutions for one LR frame of height x width."""
    c, s = config.channels, config.scale
    per_pixel = 9 * (IN_CHANNELS * c + c * c + c * c + c * IN_CHANNELS * s * s)
    return per_pixel * height * width


def load_weights(model: ELSR, state: dict[str, torch.Tensor], source: str, transfer: bool = False) -> None:
    """Load ``state`` into ``model``.

    Without ``transfer`` the tensors must match exactly. With it (x2 -> x4 pre-training),
    every tensor whose name and shape match is copied, the rest (the tail conv) keeps its
    fresh initialisation, and both lists are logged.
    """
    if model.reparam and not any(k.endswith(".point") for k in state):
        state = _plain_into_reparam(model, state)
    own = model.state_dict()
    if not transfer:
        mismatched = [k for k in own if k not in state or state[k].shape != own[k].shape]
        unexpected = [k for k in state if k not in own]
        if mismatched or unexpected:
            raise ElsrError(
                f"weights do not fit this ELSR model (mismatched: {', '.join(mismatched) or '-'}; "
                f"unexpected: {', '.join(unexpected) or '-'})",
                path=source,
                fix="check the scale and architecture, or use a transfer stage (init: transfer)",
            )
        model.load_state_dict(state)
        return
    transferred = [k for k, v in own.items() if k in state and state[k].shape == v.shape]
    fresh = [k for k in own if k not in transferred]
    if not transferred:
        raise ElsrError("no tensor could be transferred", path=source, fix="is this an ELSR checkpoint?")
    model.load_state_dict({**own, **{k: state[k] for k in transferred}})
    log.info("transfer from %s: transferred %s", source, ", ".join(transferred))
    log.info("transfer from %s: freshly initialised %s", source, ", ".join(fresh) or "nothing")


def _plain_into_reparam(model: ELSR, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Plain weights as a state dict of the training-time form (a conv that does not fit is left out)."""
    converted = {k: v for k, v in state.items() if not k.startswith(CONV_NAMES)}
    for name in CONV_NAMES:
        conv, weight, bias = getattr(model, name), state.get(f"{name}.weight"), state.get(f"{name}.bias")
        if weight is None or bias is None or weight.shape != conv.weight.shape:
            continue
        conv.load_plain(weight, bias)
        converted.update({f"{name}.{k}": v for k, v in conv.state_dict().items()})
    return converted
