"""TFLite (LiteRT) models of ELSR, written operator by operator from our own weights and QAT parameters.

Both graphs are NHWC and use only builtin operators that LiteRT and its XNNPACK delegate run in one
partition: ``CONV_2D`` x4, ``LEAKY_RELU`` (the shared PReLU slope; ``PRELU`` for per-channel
slopes), ``ADD``, ``DEPTH_TO_SPACE`` (the tail conv's output channels are reordered so that TFLite's
DCR order gives PyTorch's PixelShuffle), and, where the ends need them, ``QUANTIZE``/``DEQUANTIZE``.

The INT8 model carries our QAT result over unchanged (``elsr.quant.params.quant_params``): the same
int8 per-channel weights, int32 biases, activation scales and PReLU slope as the INT8 ONNX graph.
TFLite's integer kernels want int8 activations, so every uint8 zero point z becomes z - 128 (the
same real values). There is no re-calibration, hence no PTQ step. What remains different is the
runtime's arithmetic: XNNPACK's int8 LeakyRelu uses multipliers with 8 fractional bits, so about 3%
of output pixels differ from the QAT model by one or more grey levels (0.002 dB PSNR on Set5).

Why not a converter: litert-torch (about 2.3 GB of dependencies) re-derives the ranges with its own
observers (PT2E), keeps the PReLU in float between a DEQUANTIZE and a QUANTIZE, and lowers
PixelShuffle to transposes and reshapes with the frame size baked in (measured: 3.9 ms against 3.2 ms
for this graph on the same loaded 2-core machine). Writing the flatbuffer needs only the schema
bindings that ship with the interpreter.

The on-device contract (``io_contract``, also stored in the model's metadata), by I/O mode (``TFLITE_IO``):

- ``float``: input ``lr`` NxHxWx3 (NHWC) RGB float32 in [0, 1]; output ``sr`` Nx(sH)x(sW)x3 float32
  (INT8: exactly k/255; FP32: clip to [0, 1]);
- ``uint8``: RGB bytes in and out. The INT8 graph is integer end to end: a QUANTIZE requantizes the
  uint8 input to int8 (zero point 0 -> -128, the same scale 1/255) and another the int8 result back;
- ``int8``: RGB bytes minus 128 in and out (zero point -128, scale 1/255): the INT8 graph has no
  conversion op at all, the form NPU delegates (NNAPI, MediaTek Neuron, Qualcomm QNN) take whole;
- ``uint8-float-ends``: RGB bytes in and out through a float32 tensor at each end (DEQUANTIZE and
  QUANTIZE), the form before the integer ends existed;
- height and width are dynamic (``resize_tensor_input``) unless the model was written with a fixed
  shape, which NNAPI and GPU delegates prefer.

Writing needs the flatbuffer schema and running needs the interpreter, both from the
``ai-edge-litert`` package (``pip install 'elsr[tflite]'``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from elsr.errors import ElsrError
from elsr.io.files import atomic_path
from elsr.model.network import DEFAULT_FRAME, ELSR, dcr_order
from elsr.quant.params import QuantParams
from elsr.runtime.contract import COPIES_KEY, INPUT_NAME, NHWC, OUTPUT_NAME, TFLITE_METADATA_KEY
from elsr.runtime.tflite_model import schema

SIGNATURE = "serving_default"
PIXEL_SCALE = np.float32(1 / 255)      # input/output quantization: the uint8 pixel grid
INT8_SHIFT = 128                       # uint8 zero point z is int8 zero point z - 128


# ----------------------------------------------------------------------------------------- writing


class _Builder:
    """Tensors, constant buffers and operators of one subgraph, packed into a TFLite flatbuffer."""

    def __init__(self, batch: int, height: int, width: int, dynamic: bool) -> None:
        self.s = schema()
        self.batch, self.height, self.width, self.dynamic = batch, height, width, dynamic
        self.tensors: list = []
        self.buffers: list = [self.s.BufferT()]   # buffer 0: the empty sentinel
        self.operators: list = []
        self.codes: dict[tuple[int, int], int] = {}

    def _quant(self, scale, zero_point):
        if scale is None:
            return None
        q = self.s.QuantizationParametersT()
        q.scale = [float(v) for v in np.atleast_1d(scale)]
        q.zeroPoint = [int(v) for v in np.atleast_1d(zero_point)]
        q.quantizedDimension = 0
        return q

    def _add(self, name: str, shape, dtype: int, buffer: int = 0, scale=None, zero_point=None,
             signature=None) -> int:
        t = self.s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, [int(d) for d in shape], dtype, buffer
        t.shapeSignature = signature
        t.quantization = self._quant(scale, zero_point)
        self.tensors.append(t)
        return len(self.tensors) - 1

    def activation(self, name: str, channels: int, dtype: int, factor: int = 1, scale=None,
                   zero_point=None) -> int:
        """An NxHxWxC feature map (H and W times ``factor``: the output side); -1 in the signature where dynamic."""
        shape = [self.batch, self.height * factor, self.width * factor, channels]
        signature = [-1, -1, -1, channels] if self.dynamic else None
        return self._add(name, shape, dtype, scale=scale, zero_point=zero_point, signature=signature)

    def const(self, name: str, array: np.ndarray, dtype: int, scale=None, zero_point=None) -> int:
        buffer = self.s.BufferT()
        buffer.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
        self.buffers.append(buffer)
        return self._add(name, array.shape, dtype, len(self.buffers) - 1, scale, zero_point)

    def op(self, code: int, version: int, inputs: list[int], outputs: list[int], options_type: int = 0,
           options=None) -> int:
        key = (code, version)
        if key not in self.codes:
            self.codes[key] = len(self.codes)
        o = self.s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self.codes[key], inputs, outputs
        o.builtinOptionsType, o.builtinOptions = options_type, options
        self.operators.append(o)
        return outputs[0]

    def finish(self, inputs: list[int], outputs: list[int], metadata: dict[str, str]) -> bytes:
        import flatbuffers

        s = self.s
        graph = s.SubGraphT()
        graph.tensors, graph.inputs, graph.outputs, graph.operators = self.tensors, inputs, outputs, self.operators
        graph.name = "main"
        codes = []
        for code, version in self.codes:
            c = s.OperatorCodeT()
            c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), version
            codes.append(c)
        blob = s.BufferT()
        blob.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), np.uint8)
        self.buffers.append(blob)
        entry = s.MetadataT()
        entry.name, entry.buffer = TFLITE_METADATA_KEY, len(self.buffers) - 1
        signature = s.SignatureDefT()
        signature.signatureKey, signature.subgraphIndex = SIGNATURE, 0
        signature.inputs = [self._tensor_map(INPUT_NAME, inputs[0])]
        signature.outputs = [self._tensor_map(OUTPUT_NAME, outputs[0])]
        model = s.ModelT()
        model.version, model.description = 3, "elsr"
        model.operatorCodes, model.subgraphs, model.buffers = codes, [graph], self.buffers
        model.metadata, model.signatureDefs = [entry], [signature]
        builder = flatbuffers.Builder(4096)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    def _tensor_map(self, name: str, index: int):
        m = self.s.TensorMapT()
        m.name, m.tensorIndex = name, index
        return m

    # -- operators

    def conv(self, x: int, name: str, weight: np.ndarray, bias: np.ndarray, out: int,
             weight_scale: np.ndarray | None = None, bias_scale: np.ndarray | None = None) -> int:
        """3x3 stride-1 SAME conv; ``weight`` is (out, in, 3, 3) as in PyTorch; int8 when scales are given."""
        s = self.s
        quantized = weight_scale is not None
        options = s.Conv2DOptionsT()
        options.padding, options.strideW, options.strideH = s.Padding.SAME, 1, 1
        options.dilationWFactor = options.dilationHFactor = 1
        if quantized:
            zeros = np.zeros(len(weight_scale), np.int64)
            w = self.const(f"{name}_w", weight.transpose(0, 2, 3, 1).astype(np.int8), s.TensorType.INT8,
                           weight_scale, zeros)
            b = self.const(f"{name}_b", bias.astype(np.int32), s.TensorType.INT32, bias_scale, zeros)
        else:
            w = self.const(f"{name}_w", weight.transpose(0, 2, 3, 1).astype(np.float32), s.TensorType.FLOAT32)
            b = self.const(f"{name}_b", bias.astype(np.float32), s.TensorType.FLOAT32)
        return self.op(s.BuiltinOperator.CONV_2D, 3 if quantized else 1, [x, w, b], [out],
                       s.BuiltinOptions.Conv2DOptions, options)

    def activation_fn(self, x: int, slope: np.ndarray, out: int, quantized: bool) -> int:
        """PReLU: LEAKY_RELU for one shared slope (the same function, and XNNPACK runs it in int8), else PRELU.

        Our slope is stored as it is. XNNPACK's int8 LEAKY_RELU kernel turns the slope and the scale
        ratio into multipliers with 8 fractional bits, so its negative outputs may land one step
        away from the QAT model's (0.002 dB PSNR here); an int8 PRELU (with an exact int8 alpha)
        would match QAT to the step, but XNNPACK does not run quantized PRELU and the frame then
        takes about 60% longer. A per-channel slope has no LeakyRelu equivalent: PRELU with an int8
        alpha (symmetric, per tensor).
        """
        s = self.s
        if slope.size == 1:
            options = s.LeakyReluOptionsT()
            options.alpha = float(slope.reshape(-1)[0])
            return self.op(s.BuiltinOperator.LEAKY_RELU, 1, [x], [out], s.BuiltinOptions.LeakyReluOptions, options)
        alpha = slope.reshape(1, 1, -1).astype(np.float32)
        if quantized:
            a_scale = np.float32(max(float(np.abs(alpha).max()), 1e-8) / 127)
            alpha_t = self.const("body_act_alpha", np.clip(np.round(alpha / a_scale), -127, 127).astype(np.int8),
                                 s.TensorType.INT8, a_scale, 0)
        else:
            alpha_t = self.const("body_act_alpha", alpha, s.TensorType.FLOAT32)
        return self.op(s.BuiltinOperator.PRELU, 1, [x, alpha_t], [out])

    def add(self, a: int, b: int, out: int, quantized: bool) -> int:
        s = self.s
        return self.op(s.BuiltinOperator.ADD, 2 if quantized else 1, [a, b], [out], s.BuiltinOptions.AddOptions,
                       s.AddOptionsT())

    def depth_to_space(self, x: int, block: int, out: int, quantized: bool) -> int:
        s = self.s
        options = s.DepthToSpaceOptionsT()
        options.blockSize = block
        return self.op(s.BuiltinOperator.DEPTH_TO_SPACE, 2 if quantized else 1, [x], [out],
                       s.BuiltinOptions.DepthToSpaceOptions, options)

    def quantize(self, x: int, out: int, from_type: int | None = None) -> int:
        """QUANTIZE from float32, or (``from_type`` INT8/UINT8) a requantization between 8-bit types."""
        s = self.s
        return self.op(s.BuiltinOperator.QUANTIZE, 1 if from_type is None else 2, [x], [out],
                       s.BuiltinOptions.QuantizeOptions, s.QuantizeOptionsT())

    def dequantize(self, x: int, out: int, from_int8: bool) -> int:
        s = self.s
        return self.op(s.BuiltinOperator.DEQUANTIZE, 2 if from_int8 else 1, [x], [out],
                       s.BuiltinOptions.DequantizeOptions, s.DequantizeOptionsT())


def _shape(fixed_shape: tuple[int, int, int, int] | None) -> tuple[int, int, int, bool]:
    """(batch, height, width, dynamic) from an NCHW ``--fixed-shape`` or the default."""
    if fixed_shape is None:
        return 1, *DEFAULT_FRAME, True  # a dynamic model stores the challenge's frame size
    batch, channels, height, width = fixed_shape
    if channels != 3:
        raise ElsrError(f"--fixed-shape must have 3 channels (RGB), got {channels}", fix="e.g. 1x3x180x320")
    return batch, height, width, False


@dataclass(frozen=True)
class TensorIO:
    """How pixels cross the graph's ends: the tensor type of input and output, and how they reach the int8 graph."""

    name: str
    tag: str                      # in default file names: elsr_x4_int8{tag}.tflite
    description: str
    float_ends: bool = False      # uint8 pixels pass through float32 at each end (DEQUANTIZE + QUANTIZE)


TFLITE_IO = {io.name: io for io in (
    TensorIO("float", "", "float32 RGB in [0, 1] in and out"),
    TensorIO("uint8", "_uint8io", "uint8 RGB pixels in and out; an INT8 graph is integer end to end "
                                  "(QUANTIZE uint8 <-> int8 at the ends)"),
    TensorIO("int8", "_int8io", "int8 RGB pixels minus 128 in and out (the NPU convention): no conversion op"),
    TensorIO("uint8-float-ends", "_uint8io_floatends", "uint8 RGB pixels in and out through float32 at both ends "
                                                       "(DEQUANTIZE + QUANTIZE)", float_ends=True),
)}
IO_DTYPE = {"float": "float32", "uint8": "uint8", "int8": "int8", "uint8-float-ends": "uint8"}
VALUE_RANGE = {"float32": "0..1", "uint8": "0..255", "int8": "-128..127 (pixel - 128)"}


def io_contract(precision: str, io: str, scale: int, fixed_shape=None) -> dict:
    """The on-device contract, as stored in the model's metadata and shown by ``elsr export``."""
    batch, height, width, dynamic = _shape(fixed_shape)
    if dynamic:
        dims, out_dims = ("N", "H", "W"), ("N", f"{scale}H", f"{scale}W")
    else:
        dims, out_dims = (batch, height, width), (batch, height * scale, width * scale)
    dtype = IO_DTYPE[io]
    if dtype == "uint8":
        value_in = value_out = "uint8 RGB 0..255 (plain pixels)"
    elif dtype == "int8":
        value_in = value_out = "int8 RGB, pixel - 128 (-128..127)"
    else:
        value_in = "float32 RGB in [0, 1] (pixel / 255)"
        value_out = ("float32 RGB, exactly k/255 in [0, 1]" if precision == "int8" else
                     "float32 RGB, nominally [0, 1]: clip, then round(x * 255)")
    return {"layout": NHWC, "input": f"{INPUT_NAME} [{'x'.join(map(str, dims))}x3] {value_in}",
            "output": f"{OUTPUT_NAME} [{'x'.join(map(str, out_dims))}x3] {value_out}",
            "shape": "dynamic (resize the input tensor)" if dynamic else "fixed"}


def _metadata(precision: str, scale: int, io: str, fixed_shape, extra: dict | None) -> dict[str, str]:
    contract = io_contract(precision, io, scale, fixed_shape)
    dtype = IO_DTYPE[io]
    fields = {**(extra or {}), "precision": precision, "scale": str(scale), "layout": NHWC,
              "channel_order": "RGB", "io": io, "io_dtype": dtype, "value_range": VALUE_RANGE[dtype],
              **{f"contract_{k}": v for k, v in contract.items()}}
    return {k: str(v) for k, v in fields.items()}


def _pixels(b: _Builder, name: str, dtype: str, factor: int = 1) -> int:
    """A graph input or output tensor of ``dtype`` on the pixel grid (scale 1/255; int8: zero point -128)."""
    s = b.s
    if dtype == "float32":
        return b.activation(name, 3, s.TensorType.FLOAT32, factor)
    tensor_type = s.TensorType.UINT8 if dtype == "uint8" else s.TensorType.INT8
    return b.activation(name, 3, tensor_type, factor, PIXEL_SCALE, 0 if dtype == "uint8" else -INT8_SHIFT)


def _io(b: _Builder, quantized: bool, io: str) -> tuple[int, int]:
    """The graph input, and the tensor the first conv reads (float32 for FP32, int8 on the pixel grid for INT8).

    Every conversion is exact: each side holds k/255 for the same k.
    """
    s = b.s
    dtype = IO_DTYPE[io]
    lr = _pixels(b, INPUT_NAME, dtype)
    if not quantized:
        return lr, lr if dtype == "float32" else b.dequantize(lr, _pixels(b, "input_f", "float32"),
                                                              from_int8=dtype == "int8")
    if dtype == "int8":
        return lr, lr
    x = lr
    if TFLITE_IO[io].float_ends:
        x = b.dequantize(lr, _pixels(b, "input_f", "float32"), from_int8=False)
    return lr, b.quantize(x, _pixels(b, "input_q", "int8"), s.TensorType.INT8)


def _output(b: _Builder, x: int, scale: int, quantized: bool, io: str) -> int:
    """The graph output from the DEPTH_TO_SPACE result ``x`` (float32 for FP32, int8 on the pixel grid for INT8)."""
    dtype = IO_DTYPE[io]
    if dtype == ("int8" if quantized else "float32"):
        return x  # DEPTH_TO_SPACE wrote the output itself
    if quantized and (dtype == "float32" or TFLITE_IO[io].float_ends):
        name = OUTPUT_NAME if dtype == "float32" else "sr_f"
        x = b.dequantize(x, _pixels(b, name, "float32", scale), from_int8=True)
        if dtype == "float32":
            return x
    return b.quantize(x, _pixels(b, OUTPUT_NAME, dtype, scale), b.s.TensorType.INT8 if quantized else None)


def _output_name(quantized: bool, io: str) -> str:
    """The name of DEPTH_TO_SPACE's result: the graph output when no conversion follows it."""
    return OUTPUT_NAME if IO_DTYPE[io] == ("int8" if quantized else "float32") else "depth_to_space"


def fp32_tflite(model: ELSR, fixed_shape=None, io: str = "float", metadata: dict | None = None) -> bytes:
    """The FP32 TFLite flatbuffer of ``model`` (NHWC)."""
    b = _Builder(*_shape(fixed_shape))
    f32 = b.s.TensorType.FLOAT32
    scale, c = model.scale, model.config.channels
    w = {name: getattr(model, name) for name in ("head", "body_conv1", "body_conv2", "tail")}
    weights = {n: layer.weight.detach().float().numpy() for n, layer in w.items()}
    biases = {n: layer.bias.detach().float().numpy() for n, layer in w.items()}
    order = dcr_order(scale)
    weights["tail"], biases["tail"] = weights["tail"][order], biases["tail"][order]
    lr, x = _io(b, False, io)
    head = b.conv(x, "head", weights["head"], biases["head"], b.activation("head", c, f32))
    c1 = b.conv(head, "body_conv1", weights["body_conv1"], biases["body_conv1"], b.activation("body_conv1", c, f32))
    act = b.activation_fn(c1, model.body_act.weight.detach().float().numpy(), b.activation("body_act", c, f32),
                          quantized=False)
    c2 = b.conv(act, "body_conv2", weights["body_conv2"], biases["body_conv2"], b.activation("body_conv2", c, f32))
    added = b.add(head, c2, b.activation("add", c, f32), quantized=False)
    tail = b.conv(added, "tail", weights["tail"], biases["tail"], b.activation("tail", 3 * scale * scale, f32))
    d2s = b.depth_to_space(tail, scale, b.activation(_output_name(False, io), 3, f32, scale), quantized=False)
    sr = _output(b, d2s, scale, False, io)
    return b.finish([lr], [sr], _metadata("fp32", scale, io, fixed_shape, metadata))


def _int8_convs(params: QuantParams) -> dict:
    """The integer graph's convs (split into copies where the parameters say so), the tail's output channels in
    DEPTH_TO_SPACE's (DCR) order."""
    convs = params.integer_convs()
    return {**convs, "tail": convs["tail"].reordered(dcr_order(params.config.scale))}


def _int8_feature(b: _Builder, params: QuantParams, name: str, channels: int) -> int:
    """An int8 feature map with the QAT range of ``name`` (our uint8 zero point shifted by 128)."""
    q_scale, zero_point = params.activations[name]
    return b.activation(name, channels, b.s.TensorType.INT8, 1, np.float32(q_scale), zero_point - INT8_SHIFT)


def _int8_conv(b: _Builder, convs: dict, name: str, x: int, out: int) -> int:
    p = convs[name]
    return b.conv(x, name, p.weight, p.bias, out, weight_scale=p.weight_scale, bias_scale=p.bias_scale)


def int8_tflite(params: QuantParams, fixed_shape=None, io: str = "float", metadata: dict | None = None) -> bytes:
    """The INT8 TFLite flatbuffer of a QAT result: our weights, biases and ranges, unchanged (NHWC)."""
    b = _Builder(*_shape(fixed_shape))
    scale, convs, c = params.config.scale, _int8_convs(params), params.channels()
    lr, x = _io(b, True, io)
    head = _int8_conv(b, convs, "head", x, _int8_feature(b, params, "head", c["head"]))
    c1 = _int8_conv(b, convs, "body_conv1", head, _int8_feature(b, params, "body_conv1", c["body_conv1"]))
    a = b.activation_fn(c1, params.slope, _int8_feature(b, params, "body_act", c["body_act"]), quantized=True)
    c2 = _int8_conv(b, convs, "body_conv2", a, _int8_feature(b, params, "body_conv2", c["body_conv2"]))
    added = b.add(head, c2, _int8_feature(b, params, "add", c["add"]), quantized=True)
    t = _int8_conv(b, convs, "tail", added, _int8_feature(b, params, "tail", c["tail"]))
    d2s = b.depth_to_space(t, scale, _pixels(b, _output_name(True, io), "int8", scale), quantized=True)
    sr = _output(b, d2s, scale, True, io)
    return b.finish([lr], [sr], _metadata("int8", scale, io, fixed_shape, {**(metadata or {}),
                                                                          COPIES_KEY: str(params.copies)}))


def int8_operator_graphs(params: QuantParams) -> dict[str, bytes]:
    """Each operator of the INT8 graph alone, with the same QAT weights, biases and ranges, int8 tensors in and out
    (dynamic height and width): to find which kernel of a runtime gives another output (the ARM64 check's --probes).

    Keys: conv_head, conv_body1, conv_body2, conv_tail, leaky_relu, add, depth_to_space.
    """
    convs, channels = _int8_convs(params), params.channels()
    graphs = {}

    def graph(name: str, sources: list[str], build: Callable[[_Builder, list[int]], int]) -> None:
        b = _Builder(1, *DEFAULT_FRAME, True)
        inputs = [_int8_feature(b, params, source, channels[source]) for source in sources]
        graphs[name] = b.finish(inputs, [build(b, inputs)], {"probe": name, "precision": "int8"})

    for name, source, layer in (("conv_head", "input", "head"), ("conv_body1", "head", "body_conv1"),
                                ("conv_body2", "body_act", "body_conv2"), ("conv_tail", "add", "tail")):
        graph(name, [source], lambda b, x, layer=layer: _int8_conv(b, convs, layer, x[0],
                                                                    _int8_feature(b, params, layer, channels[layer])))
    graph("leaky_relu", ["body_conv1"], lambda b, x: b.activation_fn(
        x[0], params.slope, _int8_feature(b, params, "body_act", channels["body_act"]), quantized=True))
    graph("add", ["head", "body_conv2"],
          lambda b, x: b.add(x[0], x[1], _int8_feature(b, params, "add", channels["add"]), quantized=True))
    scale = params.config.scale
    graph("depth_to_space", ["tail"], lambda b, x: b.depth_to_space(
        x[0], scale, _pixels(b, "depth_to_space", "int8", scale), quantized=True))
    return graphs


def save_tflite(data: bytes, out: str | Path) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return out
