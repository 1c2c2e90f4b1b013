"""ExecuTorch programs (.pte) of ELSR: ``torch.export``, lowered to the XNNPACK delegate, written with our metadata.

FP32: the network itself. INT8: the integer model of our QAT result (``elsr.quant.params.QuantParams``, its convs
as ``integer_convs()`` gives them: on a split skip path two int8 copies per hidden channel), written
as the quantize/dequantize graph that PT2E quantization produces, but with our int8 per-channel weights, int32
biases (given as the exact float ``bias * bias_scale``, which XNNPACK quantizes back to the same integers) and
activation ranges, so there is no new calibration: the same integer model as the INT8 ONNX and TFLite files
(int8 activations: our uint8 zero point minus 128, as in TFLite).

What XNNPACK runs, and how:

- every conv, the residual add and the shared PReLU slope (as LeakyRelu, the same function) run in int8
  inside one XNNPACK partition. ExecuTorch's XNNPACK partitioner lists LeakyRelu as float-only although
  XNNPACK has an int8 kernel for it; one partitioner rule (``_int8_leaky_relu_config``) lets it take the
  quantized pattern, so the activation stays integer. XNNPACK's int8 LeakyRelu rounds its multipliers to 8
  fractional bits, so about a quarter of the output pixels land a grey level away from the QAT model (PSNR
  within 0.002 dB of the INT8 ONNX on Set5 and Set14), as in TFLite;
- the tensors are NHWC, RGB interleaved as a phone's bitmap holds it (and as our TFLite files take it): the input
  ``[1, H, W, 3]``; the output ``[1, 3s, H, sW]`` in channels-last memory (ExecuTorch dim order 0, 2, 3, 1), whose
  bytes are the NHWC image ``[1, sH, sW, 3]``. The tail conv and PixelShuffle are ``SubRowConvs``: one conv per
  sub-row of PixelShuffle's blocks, concatenated along the width, so the program has no reshape: with any height
  and width XNNPACK takes every operator, in one partition. (PixelShuffle as reshapes cannot be delegated with a
  dynamic size: XNNPACK's reshape takes at most one symbolic size, and PixelShuffle's need H and W apart.) The
  output leaves XNNPACK in the conv's own NHWC memory, so the pixel shuffle moves the output once (the
  concatenation), where the NCHW form (view, 6-D permute, view) moved it three times
  (``python -m elsr.benchmarks.pte_profile``);
- ``--io int8`` programs take and give RGB bytes minus 128 (int8 on the pixel grid, the convention of NPU
  delegates and TFLite's ``--io int8``): the INT8 program then has no conversion at all, the FP32 one converts
  in XNNPACK. There is no uint8 variant: ExecuTorch's XNNPACK delegate takes no uint8 tensors, and the
  conversion as ExecuTorch's portable kernels (XOR 128 and a cast at each end) took about three times as long
  as the whole network (measured: 108 against 28 ms per 180x320 frame); flipping the top bit of each byte
  is one vector instruction in the app.

A dynamic program is memory-planned for its largest input (``MAX_LR``): ExecuTorch allocates the intermediate
tensors outside the delegate for that bound when it loads the method, so the bound is a video frame (up to
540x960 LR, 2160x3840 out) rather than any size; larger images run in tiles (``Upscaler.max_size``).

The metadata (``elsr.runtime.contract``) is a constant method, ``elsr_metadata``, returning the UTF-8 bytes of a
JSON object: scale, precision, I/O contract, bound, validation PSNR, commit and command.

Needs the optional ``executorch`` package (``pip install 'elsr[executorch]'``).
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from elsr.export.request import ExportRequest
from elsr.export.tflite import INT8_SHIFT
from elsr.model.network import DEFAULT_FRAME, ELSR, dcr_order
from elsr.quant.params import QuantParams
from elsr.runtime.contract import (COPIES_KEY, INPUT_NAME, NHWC, OUTPUT_NAME, PTE_FORMAT_TAG, PTE_METADATA_METHOD,
                                   model_metadata)
from elsr.runtime.pte_model import import_executorch

MAX_LR = (540, 960)           # the largest LR frame a dynamic program takes (its memory plan's bound): 4K UHD out
PTE_IO = ("float", "int8")    # the tensors at the ends: float32 RGB in [0, 1], or RGB bytes minus 128
INT8_RANGE = (-128, 127)
WEIGHT_RANGE = (-127, 127)    # our symmetric per-channel weights
VIEW_OPS = {"et_view"}        # reshapes ExecuTorch turned into views of memory: no kernel, no data moved
TENSOR_NAMESPACES = ("aten", "quantized_decomposed", "dim_order_ops")  # operators on tensors; the rest is
# bookkeeping: getitem, the size arithmetic (executorch_prim / operator), memory.alloc, the delegate call


def _qd():
    return torch.ops.quantized_decomposed


# ------------------------------------------------------------------------------------------- the modules


def sub_rows(scale: int) -> list[list[int]]:
    """The tail's output channels (PyTorch order) per sub-row i of PixelShuffle's blocks: DCR order (sub-column j,
    then colour), ``scale * C`` each."""
    order = dcr_order(scale)
    rows = len(order) // scale
    return [order[i * rows:(i + 1) * rows] for i in range(scale)]


class SubRowConvs(nn.Module):
    """A tail conv and PixelShuffle as ``scale`` convs, one per sub-row i of each output block (``sub_rows``),
    concatenated along the width: ``[n, s*C, h, s*w]``, whose channels-last memory is (row, i, column, j, colour),
    the NHWC image ``[n, s*h, s*w, C]`` byte for byte. Each output value is the tail's own dot product; nothing is
    reshaped, so XNNPACK takes it with any height and width."""

    def __init__(self, tail: nn.Conv2d, scale: int) -> None:
        super().__init__()
        self.parts = nn.ModuleList()
        for rows in sub_rows(scale):
            conv = nn.Conv2d(tail.in_channels, len(rows), kernel_size=3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(tail.weight[rows])
                conv.bias.copy_(tail.bias[rows])
            self.parts.append(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([conv(x) for conv in self.parts], dim=3)


def _to_nchw(x: torch.Tensor) -> torch.Tensor:
    return torch.permute_copy(x, (0, 3, 1, 2))


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """The same tensor in channels-last memory (in XNNPACK a concatenation of conv outputs already is: nothing
    moves)."""
    return x.to(memory_format=torch.channels_last)


PIXEL_GRID = (1 / 255, -INT8_SHIFT)   # int8 pixels: value (p - 128) means p / 255


def _int8_pixels(x: torch.Tensor) -> torch.Tensor:
    """float32 in [0, 1] -> int8 pixels minus 128 (rounded to the grid, clipped)."""
    return _qd().quantize_per_tensor.default(x, *PIXEL_GRID, *INT8_RANGE, torch.int8)


def _float_pixels(x: torch.Tensor) -> torch.Tensor:
    return _qd().dequantize_per_tensor.default(x, *PIXEL_GRID, *INT8_RANGE, torch.int8)


class Fp32Program(nn.Module):
    """The FP32 network on NHWC tensors: the input permuted to NCHW, the tail and PixelShuffle as ``SubRowConvs``,
    the output in channels-last memory (the NHWC image); with ``io='int8'``, RGB bytes minus 128 at the ends
    (XNNPACK converts them to and from float32)."""

    def __init__(self, model: ELSR, io: str) -> None:
        super().__init__()
        self.model, self.io = copy.deepcopy(model).cpu().eval(), io
        self.model.tail = SubRowConvs(model.tail, model.scale)
        self.model.upsample = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _channels_last(self.model(_to_nchw(_float_pixels(x) if self.io == "int8" else x)))
        return _int8_pixels(y) if self.io == "int8" else y


class Int8Program(nn.Module):
    """The integer model of QAT parameters as a quantize/dequantize graph (PT2E's form), int8 activations, on NHWC
    tensors as ``Fp32Program`` (the input's permute and the pixel shuffle on int8)."""

    def __init__(self, params: QuantParams, io: str) -> None:
        super().__init__()
        self.io, self.scale = io, params.config.scale
        self.act = {name: (float(np.float32(s)), int(z) - INT8_SHIFT) for name, (s, z) in params.activations.items()}
        for name, conv in params.integer_convs().items():   # split: the skip path's two copies per channel
            parts = ({f"tail{i}": rows for i, rows in enumerate(sub_rows(self.scale))} if name == "tail" else
                     {name: list(range(len(conv.weight)))})      # the tail as SubRowConvs' sub-row convs
            for part, rows in parts.items():
                self.register_buffer(f"{part}_w", torch.from_numpy(conv.weight[rows].astype(np.int8)))
                self.register_buffer(f"{part}_w_scale", torch.from_numpy(conv.weight_scale[rows].astype(np.float32)))
                self.register_buffer(f"{part}_w_zero", torch.zeros(len(rows), dtype=torch.int64))
                bias = conv.bias[rows].astype(np.float64) * conv.bias_scale[rows].astype(np.float64)
                self.register_buffer(f"{part}_b", torch.from_numpy(bias.astype(np.float32)))
        self.shared_slope = float(params.slope.reshape(-1)[0]) if params.slope.size == 1 else None
        self.slope = nn.Parameter(torch.from_numpy(params.slope.reshape(-1).astype(np.float32)), requires_grad=False)

    def on_int8(self, x: torch.Tensor, op, name: str) -> torch.Tensor:
        """``op`` (a permute, a change of memory order) on the int8 tensor ``x`` of range ``name``: XNNPACK's
        quantized pattern."""
        return self.q(op(self.dq(x, name)), name)

    def q(self, x: torch.Tensor, name: str) -> torch.Tensor:
        scale, zero_point = self.act[name]
        return _qd().quantize_per_tensor.default(x, scale, zero_point, *INT8_RANGE, torch.int8)

    def dq(self, x: torch.Tensor, name: str) -> torch.Tensor:
        scale, zero_point = self.act[name]
        return _qd().dequantize_per_tensor.default(x, scale, zero_point, *INT8_RANGE, torch.int8)

    def conv(self, x: torch.Tensor, source: str, name: str, part: str | None = None) -> torch.Tensor:
        """Quantized conv ``name`` (its weights ``part``: a sub-row of the tail) reading the int8 tensor ``x`` of
        range ``source``; int8 out, range ``name``."""
        part = part or name
        weight = _qd().dequantize_per_channel.default(getattr(self, f"{part}_w"), getattr(self, f"{part}_w_scale"),
                                                      getattr(self, f"{part}_w_zero"), 0, *WEIGHT_RANGE, torch.int8)
        return self.q(F.conv2d(self.dq(x, source), weight, getattr(self, f"{part}_b"), padding=1), name)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dq(x, "body_conv1")
        y = F.leaky_relu(x, self.shared_slope) if self.shared_slope is not None else F.prelu(x, self.slope)
        return self.q(y, "body_act")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The integer graph; on a split skip path head, body_conv2 and the add hold each hidden channel twice and
        the add adds copy i of the head to copy i of body_conv2 (elementwise, as QuantELSR(split=True))."""
        x = x if self.io == "int8" else self.q(x, "input")   # int8 pixels are the input range's integers
        head = self.conv(self.on_int8(x, _to_nchw, "input"), "input", "head")
        c2 = self.conv(self.activation(self.conv(head, "head", "body_conv1")), "body_act", "body_conv2")
        added = self.q(self.dq(head, "head") + self.dq(c2, "body_conv2"), "add")
        parts = [self.dq(self.conv(added, "add", "tail", f"tail{i}"), "tail") for i in range(self.scale)]
        y = self.q(torch.cat(parts, dim=3), "tail")    # SubRowConvs on int8
        y = self.on_int8(y, _channels_last, "tail")   # on int8: XNNPACK's quantized pattern
        return y if self.io == "int8" else self.dq(y, "tail")


# ------------------------------------------------------------------------------------------- lowering


def _int8_leaky_relu_config():
    """ExecuTorch's XNNPACK LeakyRelu rule, also for the quantized pattern (dequantize -> leaky_relu -> quantize),
    which XNNPACK runs with its int8 kernel."""
    configs = import_executorch("executorch.backends.xnnpack.partition.config")
    base = import_executorch("executorch.backends.xnnpack.partition.config.generic_node_configs").LeakyReLUConfig
    precision = import_executorch("executorch.backends.xnnpack.partition.config.xnnpack_config").ConfigPrecisionType

    class Int8LeakyReLUConfig(base):
        def supported_precision_types(self):
            return [precision.FP32, precision.STATIC_QUANT]

    return [c for c in configs.ALL_PARTITIONER_CONFIGS if c is not base] + [Int8LeakyReLUConfig]


def _example(request: ExportRequest) -> tuple[torch.Tensor, dict | None]:
    """An NHWC example input and the dynamic shapes: height and width up to MAX_LR, or the fixed shape (given
    NCHW, as for every format)."""
    dtype = torch.int8 if request.io == "int8" else torch.float32
    if request.fixed_shape is not None:
        batch, channels, height, width = request.fixed_shape
        return torch.zeros(batch, height, width, channels, dtype=dtype), None
    height = torch.export.Dim("height", min=1, max=MAX_LR[0])
    width = torch.export.Dim("width", min=1, max=MAX_LR[1])
    example = [min(side, bound) for side, bound in zip(DEFAULT_FRAME, MAX_LR)]
    return torch.zeros(1, *example, 3, dtype=dtype), {"x": {1: height, 2: width}}


def program_module(request: ExportRequest) -> nn.Module:
    return (Int8Program(request.quant_params, request.io) if request.int8 else
            Fp32Program(request.model, request.io)).eval()


@dataclass
class Delegation:
    """Which operators of a lowered program XNNPACK runs (per partition) and which ExecuTorch runs itself."""

    partitions: list[list[str]]
    outside: list[str]

    @property
    def delegated(self) -> list[str]:
        return [op for ops in self.partitions for op in ops]

    @property
    def kernels_outside(self) -> list[str]:
        """Operators outside XNNPACK that compute (not views)."""
        return [op for op in self.outside if op not in VIEW_OPS]

    def lines(self) -> list[str]:
        count = Counter(self.delegated)
        ops = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in count.items())
        head = (f"XNNPACK: {len(self.delegated)}/{len(self.delegated) + len(self.outside)} operators delegated "
                f"in {len(self.partitions)} partition{'s' if len(self.partitions) != 1 else ''} ({ops})")
        if not self.outside:
            return [head + "; every operator delegated"]
        count = Counter(self.outside)
        why = {"et_view": "a reshape ExecuTorch made a view: no kernel, no data moved"}
        parts = [f"{op}{f' x{n}' if n > 1 else ''} ({why.get(op, 'a portable kernel')})" for op, n in count.items()]
        return [head, "outside XNNPACK: " + "; ".join(parts)]


def _op_name(node) -> str | None:
    """'convolution' for aten.convolution.default, 'et_view' for ExecuTorch's memory view; None for bookkeeping."""
    name = str(getattr(node.target, "__name__", ""))
    if getattr(node.target, "__module__", "").endswith("exir.memory"):
        return "et_view" if name == "view" else None   # memory.alloc: the planner's buffers
    parts = (name if name.count(".") >= 2 else str(node.target)).split(".")  # edge ops: their __name__; aten: str
    return parts[1] if len(parts) > 2 and parts[0] in TENSOR_NAMESPACES and parts[1] != "sym_size" else None


def delegation(program) -> Delegation:
    """The XNNPACK partitions and the remaining operators of an ExecuTorch program (after ``to_executorch``)."""
    graph_module = program.exported_program().graph_module
    partitions, outside = [], []
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        if "executorch_call_delegate" in str(node.target):
            lowered = getattr(graph_module, node.args[0].target)
            partitions.append([name for n in lowered.original_module.graph.nodes
                               if n.op == "call_function" and (name := _op_name(n))])
        elif (name := _op_name(node)) is not None:
            outside.append(name)
    return Delegation(partitions, outside)


def pte_metadata(request: ExportRequest) -> dict[str, str]:
    """What the program's ``elsr_metadata`` method returns (all values strings)."""
    fixed = request.fixed_shape
    bound = fixed[2:] if fixed else MAX_LR
    scale = request.model.scale
    value = "int8 RGB, pixel - 128 (-128..127)" if request.io == "int8" else "float32 RGB in [0, 1]"
    n, h, w = (str(fixed[0]), *map(str, fixed[2:])) if fixed else ("1", "H", "W")
    sh, sw = (str(int(h) * scale), str(int(w) * scale)) if fixed else (f"{scale}H", f"{scale}W")
    bounds = "" if fixed else f", H <= {MAX_LR[0]}, W <= {MAX_LR[1]}"
    meta = {**model_metadata(request.model, request.precision, request.artifact_meta), "format": PTE_FORMAT_TAG,
            "io": request.io, "io_dtype": "int8" if request.io == "int8" else "float32",
            "value_range": "-128..127 (pixel - 128)" if request.io == "int8" else "0..1", "delegate": "xnnpack",
            "shape": "fixed" if fixed else "dynamic", "max_height": str(bound[0]), "max_width": str(bound[1]),
            "layout": NHWC, "contract_input": f"{INPUT_NAME} NHWC [{n}x{h}x{w}x3]{bounds}, {value}",
            "contract_output": f"{OUTPUT_NAME} [{n}x{3 * scale}x{h}x{sw}] in channels-last memory: the bytes "
                               f"of the NHWC image [{n}x{sh}x{sw}x3], {value}"}
    if request.int8:
        meta["quantization"] = ("qat; int8 per-channel weights, int32 biases, int8 activations "
                                "(our uint8 ranges shifted by 128)")
        meta[COPIES_KEY] = str(request.quant_params.copies)
    return meta


def pte_program(request: ExportRequest):
    """(the ExecuTorch program manager, its Delegation) of the request, lowered to XNNPACK."""
    exir = import_executorch("executorch.exir")
    partitioner = import_executorch("executorch.backends.xnnpack.partition.xnnpack_partitioner").XnnpackPartitioner
    example, shapes = _example(request)
    with torch.no_grad():
        exported = torch.export.export(program_module(request), (example,), dynamic_shapes=shapes)
    metadata = json.dumps(pte_metadata(request), sort_keys=True).encode()
    constant = {PTE_METADATA_METHOD: torch.tensor(list(metadata), dtype=torch.uint8)}
    edge = exir.to_edge_transform_and_lower(exported, partitioner=[partitioner(configs=_int8_leaky_relu_config())],
                                            constant_methods=constant)
    program = edge.to_executorch()
    return program, delegation(program)
