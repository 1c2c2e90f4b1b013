"""Quantization-aware training (QAT) of ELSR for a fully integer INT8 graph.

The fake-quant model mirrors, tensor for tensor, the QDQ ONNX graph that ``export.onnx_int8``
builds, so what QAT trains is what onnxruntime runs:

- input and output on the uint8 pixel grid (scale 1/255, zero point 0): both ends are lossless,
  and the output is clipped to [0, 1] for free (the field rounds outputs to uint8 anyway);
- weights: per-channel symmetric int8; biases: int32 with scale input_scale * weight_scale;
- activations: per-tensor uint8 with min/max observers (EMA), frozen for the last epochs;
- the shared PReLU slope runs as LeakyRelu, which has an integer kernel in onnxruntime.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .checkpoint import load_safely
from .errors import ElsrError
from .fileio import atomic_path
from .metrics import luma_weight_problem
from .model import ELSR, ModelConfig
from .training import cosine_lr, loss_function, validate

ACT_QMIN, ACT_QMAX = 0, 255     # uint8 activations
W_QMIN, W_QMAX = -128, 127      # int8 weights; symmetric scales use +-127
PIXEL_RANGE = (0.0, 1.0)        # input/output range: scale 1/255, zero point 0
OBSERVED = ("head", "body_conv1", "body_act", "body_conv2", "add")  # activations with learned ranges


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


def fake_quant_weight(weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    zeros = torch.zeros_like(scales, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scales, zeros, 0, W_QMIN, W_QMAX)


def fake_quant_bias(bias: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """int32 bias on the grid input_scale * weight_scale (straight-through gradient)."""
    return bias + (torch.round(bias / scales) * scales - bias).detach()


class QuantELSR(nn.Module):
    """ELSR with fake quantization at exactly the points where the INT8 graph quantizes."""

    def __init__(self, model: ELSR) -> None:
        super().__init__()
        self.config: ModelConfig = model.config
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

    def _conv(self, layer: nn.Conv2d, x: torch.Tensor, input_quant: str) -> torch.Tensor:
        w_scales = weight_scales(layer.weight)
        b_scales = self.quant[input_quant].qparams()[0] * w_scales
        return F.conv2d(x, fake_quant_weight(layer.weight, w_scales), fake_quant_bias(layer.bias, b_scales),
                        padding=1)

    def forward(self, x: torch.Tensor, taps: dict | None = None) -> torch.Tensor:
        q = self.quant
        x = q["input"](x)
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


@dataclass
class ConvParams:
    weight: np.ndarray          # int8 (out, in, 3, 3)
    weight_scale: np.ndarray    # float32 (out,)
    bias: np.ndarray            # int32 (out,)
    bias_scale: np.ndarray      # float32 (out,) = input scale * weight scale


@dataclass
class QuantParams:
    """Everything the integer graph needs, taken from a trained QuantELSR."""

    config: ModelConfig
    convs: dict[str, ConvParams]
    activations: dict[str, tuple[float, int]]   # name -> (scale, uint8 zero point)
    slope: np.ndarray                            # PReLU slope(s), float32


@torch.no_grad()
def quant_params(model: QuantELSR) -> QuantParams:
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


QAT_FORMAT = "elsr-qat-checkpoint"


def save_qat_checkpoint(path, qmodel: QuantELSR, history: list[dict]) -> None:
    """Fake-quant weights and frozen ranges, reusable for INT8 exports without training again."""
    payload = {"format": QAT_FORMAT, "version": 1, "arch": qmodel.config.to_dict(),
               "model": {k: v.detach().cpu() for k, v in qmodel.state_dict().items()}, "history": history}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_qat_checkpoint(path) -> QuantELSR:
    ckpt = load_safely(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != QAT_FORMAT:
        raise ElsrError("not a QAT checkpoint", path=path, fix="pass the .qat.pt written by 'elsr quantize'")
    qmodel = QuantELSR(ELSR(ModelConfig.from_dict(ckpt["arch"])))
    state = {**qmodel.state_dict(), **ckpt["model"]}  # checkpoints from before learned ranges lack their keys
    if set(state) != set(qmodel.state_dict()):
        raise ElsrError("QAT checkpoint does not fit this ELSR model", path=path, fix="run 'elsr quantize' again")
    qmodel.load_state_dict(state)
    return qmodel.eval()


@dataclass
class QATConfig:
    """Fine-tuning with fake quantization; observers are frozen for the last epochs."""

    epochs: int = 20
    iters_per_epoch: int = 500
    batch_size: int = 32
    patch_size: int = 32           # LR pixels
    lr: float = 5e-4               # cosine-decayed to lr / 10
    loss: str = "mse"
    luma_weight: float = 0.0       # share of the loss on the BT.601 luma error (see elsr.training.LumaWeightedLoss)
    equalize: bool = True          # cross-layer equalization of the hidden channels before QAT
    learn_ranges: bool = True      # train activation scales and zero points (LSQ) after calibration
    range_lr: float = 1e-3         # their learning rate (log scale; zero point in levels), decayed as lr
    freeze_fraction: float = 0.8   # observer ranges only: share of the epochs (at the end) with frozen ranges
    calibration_batches: int = 16  # forward passes that set the ranges before training
    distill: float = 0.0           # weight of the MSE to the FP32 model's output (0: ground truth only)
    ema: float = 0.0               # decay of an exponential moving average of the weights and ranges (0: off)
    seed: int = 0

    def __post_init__(self) -> None:
        if problem := luma_weight_problem(self.luma_weight):
            raise ElsrError(f"luma weight {problem}", fix="0 scores the RGB error only, 0.95 mostly luma")
        if not 0.0 <= self.ema < 1.0:
            raise ElsrError(f"ema decay must be in [0, 1), got {self.ema}", fix="e.g. 0.999; 0 turns it off")
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


def train_qat(model: ELSR, source, val, cfg: QATConfig, device: torch.device, progress: bool = True,
              log=None) -> tuple[QuantELSR, list[dict]]:
    """Fine-tune ``model`` with fake quantization; returns the best fake-quant model (by PSNR-Y)."""
    torch.manual_seed(cfg.seed)
    scale = model.scale
    calibration = [lr for lr, _ in source.batches(scale, cfg.patch_size, cfg.batch_size, cfg.calibration_batches,
                                                  (cfg.seed, 99, 0))]
    teacher = copy.deepcopy(model).to(device).eval().requires_grad_(False) if cfg.distill else None
    if cfg.equalize:
        model = equalize_channels(model, calibration)
    qmodel = QuantELSR(model).to(device).train()
    with torch.no_grad():  # calibration: the observers see real patches before any update
        for lr_batch in calibration:
            qmodel(lr_batch.to(device))
    groups = [{"params": qmodel.weight_parameters(), "base_lr": cfg.lr}]
    if cfg.learn_ranges:
        qmodel.learn_ranges()
        groups.append({"params": qmodel.range_parameters(), "base_lr": cfg.range_lr})
    optimizer = torch.optim.Adam(groups, lr=cfg.lr)
    ema = copy.deepcopy(qmodel).requires_grad_(False) if cfg.ema else None
    loss_fn = loss_function(cfg.loss, cfg.luma_weight).to(device)
    freeze_at = 0 if cfg.learn_ranges else cfg.epochs - max(1, round(cfg.epochs * cfg.freeze_fraction))
    best_state, best_psnr, history = None, -math.inf, []
    for epoch in range(cfg.epochs):
        if epoch == freeze_at:
            qmodel.freeze_observers()
        lr = cosine_lr(cfg.lr, cfg.lr / 10, epoch, cfg.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["base_lr"] / cfg.lr
        losses = []
        batches = source.batches(scale, cfg.patch_size, cfg.batch_size, cfg.iters_per_epoch, (cfg.seed, 100, epoch))
        for lr_batch, hr_batch in tqdm(batches, total=cfg.iters_per_epoch, desc=f"qat {epoch + 1}/{cfg.epochs}",
                                       unit="it", leave=False, disable=None if progress else True):
            lr_batch = lr_batch.to(device)
            out = qmodel(lr_batch)
            loss = loss_fn(out, hr_batch.to(device))
            if teacher is not None:  # distillation: pull the INT8 model towards the FP32 function
                with torch.no_grad():
                    target = teacher(lr_batch)
                loss = (1 - cfg.distill) * loss + cfg.distill * F.mse_loss(out, target)
            if not torch.isfinite(loss):
                raise ElsrError(f"QAT loss became {loss.item()} in epoch {epoch + 1}", fix="lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                update_ema(ema, qmodel, cfg.ema)
            losses.append(loss.item())
        metrics = validate(qmodel, val, device)
        frozen = epoch >= freeze_at
        history.append({"epoch": epoch + 1, "lr": lr, "loss": float(np.mean(losses)), "frozen": frozen, **metrics})
        candidates = [(metrics["psnr_y"], qmodel)]
        if ema is not None:
            ema_psnr = validate(ema, val, device)["psnr_y"]
            history[-1]["ema_psnr_y"] = ema_psnr
            candidates.append((ema_psnr, ema))
        if log:
            log.info("qat epoch %d/%d: lr %.1e loss %.5f | fake-quant val %.3f dB Y%s%s", epoch + 1, cfg.epochs, lr,
                     history[-1]["loss"], metrics["psnr_y"],
                     f", EMA {history[-1]['ema_psnr_y']:.3f}" if ema is not None else "",
                     " (ranges learned)" if cfg.learn_ranges else " (ranges frozen)" if frozen else "")
        for psnr, candidate in candidates:
            if frozen and psnr > best_psnr:  # only states whose ranges are final
                best_psnr, best_state = psnr, copy.deepcopy(candidate.state_dict())
    qmodel.load_state_dict(best_state)
    qmodel.freeze_observers()
    return qmodel.eval().cpu(), history
