"""The fully integer INT8 ELSR graph (QDQ ONNX) from QAT parameters, and those parameters read back from it.

Built node by node so that onnxruntime fuses every conv to QLinearConv, the residual Add to
QLinearAdd, the shared-slope PReLU to QLinearLeakyRelu, and moves DepthToSpace in uint8. The
graph keeps the float contract of every elsr ONNX model: input ``lr`` and output ``sr`` are
float32 NCHW RGB in [0, 1]; the quantization of both is exactly the uint8 pixel grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from elsr.errors import ElsrError
from elsr.io.files import atomic_path
from elsr.model.network import ModelConfig, config_from_parameters, dcr_order
from elsr.quant.checkpoint import read_qat_checkpoint
from elsr.quant.fake_quant import QuantELSR
from elsr.quant.params import ConvParams, QuantParams, fold_copies, qat_model_from_params, quant_params
from elsr.runtime.contract import INPUT_NAME as INPUT
from elsr.runtime.contract import COPIES_KEY, ONNX_FORMAT_TAG
from elsr.runtime.contract import OUTPUT_NAME as OUTPUT
from elsr.runtime.onnx_files import read_onnx

INT8_OPSET = 18
INT8_QUANTIZATION = "qat; qdq; int8 per-channel weights, int32 biases, uint8 activations"  # metadata 'quantization'
CHANNEL_MULTIPLE = 16  # hidden channels padded (with exact zeros) for onnxruntime's fast int8 kernels


class _GraphBuilder:
    """Collects nodes and initializers; every DQ gets a single consumer (as QDQ fusion expects)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def quantize(self, x: str, name: str, scale: float, zero_point: int) -> str:
        s = self.const(f"{name}_scale", np.array(scale, np.float32))
        z = self.const(f"{name}_zero_point", np.array(zero_point, np.uint8))
        return self.node("QuantizeLinear", [x, s, z], f"{name}_q")

    def dequantize(self, q: str, name: str, consumer: str) -> str:
        return self.node("DequantizeLinear", [q, f"{name}_scale", f"{name}_zero_point"], f"{name}_dq_{consumer}")

    def conv(self, x: str, name: str, params) -> str:
        w = self.const(f"{name}_w", params.weight)
        ws = self.const(f"{name}_w_scale", params.weight_scale)
        wz = self.const(f"{name}_w_zero_point", np.zeros_like(params.weight_scale, np.int8))
        b = self.const(f"{name}_b", params.bias)
        bs = self.const(f"{name}_b_scale", params.bias_scale)
        bz = self.const(f"{name}_b_zero_point", np.zeros_like(params.bias, np.int32))
        w_dq = self.node("DequantizeLinear", [w, ws, wz], f"{name}_w_dq", axis=0)
        b_dq = self.node("DequantizeLinear", [b, bs, bz], f"{name}_b_dq", axis=0)
        return self.node("Conv", [x, w_dq, b_dq], f"{name}_out", kernel_shape=[3, 3], pads=[1, 1, 1, 1])


def _pad_conv(conv: ConvParams, outputs: int, inputs: int, input_scale: float) -> ConvParams:
    """``conv`` with zero filters added up to ``outputs`` and zero input channels up to ``inputs``."""
    out_pad, in_pad = outputs - conv.weight.shape[0], inputs - conv.weight.shape[1]
    weight = np.pad(conv.weight, ((0, out_pad), (0, in_pad), (0, 0), (0, 0)))
    weight_scale = np.concatenate([conv.weight_scale, np.full(out_pad, conv.weight_scale.max(), np.float32)])
    return ConvParams(weight=weight, weight_scale=weight_scale, bias=np.pad(conv.bias, (0, out_pad)),
                      bias_scale=(weight_scale * np.float32(input_scale)).astype(np.float32))


CONV_TENSORS = {"head": ("input", "head"), "body_conv1": ("head", "body_conv1"),
                "body_conv2": ("body_act", "body_conv2"), "tail": ("add", "tail")}   # conv -> (input, output)


def padded_channels(params: QuantParams, multiple: int) -> dict[str, int]:
    """Channels of each tensor of the graph: the hidden ones (split or not) zero-padded to ``multiple``."""
    return {name: n if name in ("input", "tail") else -(-n // multiple) * multiple
            for name, n in params.channels().items()}


def graph_convs(params: QuantParams, multiple: int) -> dict[str, ConvParams]:
    """The integer graph's convs (split into copies where the parameters say so), the hidden channels zero-padded
    up to a multiple of ``multiple``.

    The extra channels hold exact zeros all the way (zero weights and biases, zero quantizes to the
    zero point, LeakyRelu(0) = 0), so the output is bit-identical; onnxruntime's integer conv kernels
    are much faster for channel counts that are multiples of 16 (its FP32 path pads to 16-channel
    blocks internally for the same reason).
    """
    channels, act = padded_channels(params, max(multiple, 1)), params.activations
    return {name: _pad_conv(conv, channels[CONV_TENSORS[name][1]], channels[CONV_TENSORS[name][0]],
                            act[CONV_TENSORS[name][0]][0])
            for name, conv in params.integer_convs().items()}


def build_int8_model(params: QuantParams, metadata: dict[str, str] | None = None,
                     channel_multiple: int = CHANNEL_MULTIPLE) -> onnx.ModelProto:
    """The QDQ ONNX model of a QAT-trained ELSR (hidden channels zero-padded to ``channel_multiple``)."""
    convs = graph_convs(params, channel_multiple)
    hidden = padded_channels(params, max(channel_multiple, 1))["body_act"]
    slope = params.slope if params.slope.size == 1 else np.pad(params.slope, (0, hidden - params.slope.size))
    g = _GraphBuilder()
    act = params.activations
    scale = params.config.scale

    def requant(x: str, name: str) -> str:
        return g.quantize(x, name, *act[name])

    x_q = g.quantize(INPUT, "input", *act["input"])
    head_q = requant(g.conv(g.dequantize(x_q, "input", "head"), "head", convs["head"]), "head")
    c1_q = requant(g.conv(g.dequantize(head_q, "head", "body_conv1"), "body_conv1", convs["body_conv1"]),
                   "body_conv1")
    c1 = g.dequantize(c1_q, "body_conv1", "body_act")
    if slope.size == 1:  # one shared slope: exactly LeakyRelu, which has an integer kernel
        act_out = g.node("LeakyRelu", [c1], "body_act_out", alpha=float(slope.reshape(-1)[0]))
    else:
        slopes = g.const("body_act_slope", slope.reshape(-1, 1, 1).astype(np.float32))
        act_out = g.node("PRelu", [c1, slopes], "body_act_out")
    act_q = requant(act_out, "body_act")
    c2_q = requant(g.conv(g.dequantize(act_q, "body_act", "body_conv2"), "body_conv2", convs["body_conv2"]),
                   "body_conv2")
    added = g.node("Add", [g.dequantize(head_q, "head", "add"), g.dequantize(c2_q, "body_conv2", "add")], "add_out")
    add_q = requant(added, "add")
    tail = convs["tail"].reordered(dcr_order(scale))  # DCR DepthToSpace: PixelShuffle's pixels exactly
    tail_q = requant(g.conv(g.dequantize(add_q, "add", "tail"), "tail", tail), "tail")
    # DepthToSpace between a DQ and a Q of the same parameters runs on uint8 after QDQ fusion.
    d2s = g.node("DepthToSpace", [g.dequantize(tail_q, "tail", "depth_to_space")], "depth_to_space_out",
                 blocksize=scale, mode="DCR")
    out_q = g.node("QuantizeLinear", [d2s, "tail_scale", "tail_zero_point"], "output_q")
    g.node("DequantizeLinear", [out_q, "tail_scale", "tail_zero_point"], OUTPUT)

    graph = helper.make_graph(
        g.nodes, "elsr_int8",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT,
                                       ["batch", 3, f"height_x{scale}", f"width_x{scale}"])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", INT8_OPSET)],
                              producer_name="elsr")
    model.ir_version = min(model.ir_version, 10)
    for key, value in {**(metadata or {}), COPIES_KEY: str(params.copies)}.items():
        model.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(model, full_check=True)
    return model


def save_model(model: onnx.ModelProto, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
    return path


# ------------------------------------------------------------------------------ reading it back


def _hidden_channels(scale: int, parameters: int | None, body_weight: np.ndarray, slope_size: int) -> int:
    """ELSR's hidden channel count: from the 'parameters' metadata, else body_conv1's filters that are not zero
    padding (never split)."""
    prelu = "shared" if slope_size == 1 else "channel"
    config = config_from_parameters(scale, parameters, prelu) if parameters else None
    if config is not None and config.channels <= body_weight.shape[0]:
        return config.channels
    used = np.flatnonzero(np.abs(body_weight).reshape(body_weight.shape[0], -1).sum(axis=1))
    return int(used.max()) + 1 if used.size else body_weight.shape[0]


def quant_params_from_onnx(path: str | Path) -> QuantParams:
    """The QAT parameters an elsr INT8 ONNX file was built from (``elsr quantize`` / ``elsr export --int8``).

    The file holds everything the integer graph needs: int8 weights with their scales, int32 biases
    with theirs, activation scales and zero points, the PReLU slope; the hidden channels' zero padding
    is dropped. Building the INT8 graph from them gives the same file again, so the bundled
    ``elsr_x4_int8.onnx`` can be turned into the other INT8 formats without its ``.qat.pt``.
    """
    path = Path(path)
    if not path.is_file():
        raise ElsrError("no such file", path=path, fix="pass the .qat.pt or INT8 .onnx written by 'elsr quantize'")
    proto = read_onnx(path)   # external data kept in its folder, weights finite
    props = {p.key: p.value for p in proto.metadata_props}
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    names = ("input", "head", "body_conv1", "body_act", "body_conv2", "add", "tail")
    needed = [f"{n}_{k}" for n in ("head", "body_conv1", "body_conv2", "tail") for k in ("w", "w_scale", "b", "b_scale")]
    needed += [f"{n}_{k}" for n in names for k in ("scale", "zero_point")]
    fix = "pass the .qat.pt or the INT8 .onnx written by 'elsr quantize --method qat'"
    if props.get("format") != ONNX_FORMAT_TAG or not props.get("precision", "").startswith("int8") or \
            any(k not in inits for k in needed):
        raise ElsrError("not an INT8 ONNX model written by elsr", path=path, fix=fix)
    try:
        return _params_from_graph(proto, props, inits, names)
    except ElsrError as exc:
        raise ElsrError(exc.problem, path=path, fix=exc.fix or fix) from exc
    except (ValueError, TypeError, IndexError, KeyError, StopIteration) as exc:  # tensors of the wrong shape or type
        raise ElsrError(f"an INT8 ONNX model by its metadata, but its tensors do not fit ELSR "
                        f"({type(exc).__name__}: {exc})", path=path, fix=fix) from exc


def _params_from_graph(proto: onnx.ModelProto, props: dict[str, str], inits: dict[str, np.ndarray],
                       names: tuple[str, ...]) -> QuantParams:
    leaky = [n for n in proto.graph.node if n.op_type == "LeakyRelu"]
    slope = (np.array([next(a.f for a in leaky[0].attribute if a.name == "alpha")], np.float32) if leaky
             else inits["body_act_slope"].reshape(-1).astype(np.float32))
    scale = int(props.get("scale") or 0) or int(round((inits["tail_w"].shape[0] / 3) ** 0.5))
    parameters = int(props["parameters"]) if props.get("parameters", "").isdigit() else None
    c = _hidden_channels(scale, parameters, inits["body_conv1_w"], slope.size)
    config = ModelConfig(scale=scale, channels=c, prelu="shared" if slope.size == 1 else "channel")
    activations = {n: (float(inits[f"{n}_scale"]), int(inits[f"{n}_zero_point"])) for n in names}
    split = props.get(COPIES_KEY, "1") == "2"
    shape = QuantParams(config, {}, activations, slope, split).channels()
    convs = {n: ConvParams(weight=inits[f"{n}_w"][:shape[out], :shape[src]].astype(np.int8),
                           weight_scale=inits[f"{n}_w_scale"][:shape[out]].astype(np.float32),
                           bias=inits[f"{n}_b"][:shape[out]].astype(np.int32),
                           bias_scale=inits[f"{n}_b_scale"][:shape[out]].astype(np.float32))
             for n, (src, out) in CONV_TENSORS.items()}
    if _depth_to_space_mode(proto) == "DCR":  # back to PyTorch's (PixelShuffle's) channel order
        convs["tail"] = convs["tail"].reordered(np.argsort(dcr_order(scale)))
    try:
        folded = fold_copies(convs, activations, c) if split else convs
    except ValueError as exc:  # copies whose weights are not two halves of one weight
        raise ElsrError("its split skip path is not the one elsr writes", fix="export it again from its .qat.pt") \
            from exc
    params = QuantParams(config, folded, activations, slope[:c] if slope.size > 1 else slope, split)
    if split and not _same_convs(params.integer_convs(), convs):
        raise ElsrError("its split skip path is not the one elsr writes",
                        fix="export it again from its .qat.pt")  # the caller names the file
    return params


def _same_convs(a: dict[str, ConvParams], b: dict[str, ConvParams]) -> bool:
    return all(np.array_equal(getattr(a[n], f), getattr(b[n], f)) for n in a
               for f in ("weight", "weight_scale", "bias", "bias_scale"))


def _depth_to_space_mode(proto: onnx.ModelProto) -> str:
    node = next(n for n in proto.graph.node if n.op_type == "DepthToSpace")
    mode = next((a.s for a in node.attribute if a.name == "mode"), b"DCR")  # ONNX's default mode is DCR
    return mode.decode()


def qat_model_from_onnx(path: str | Path) -> QuantELSR:
    """The fake-quant model of an elsr INT8 ONNX file (see ``quant_params_from_onnx``)."""
    return qat_model_from_params(quant_params_from_onnx(path))


def load_int8_source(path: str | Path) -> tuple[QuantELSR, QuantParams, dict]:
    """(fake-quant model, integer parameters, meta) from a ``.qat.pt`` checkpoint or from the INT8 ``.onnx`` built
    from one (whose parameters are taken as stored, bit for bit). ``meta`` holds the INT8 model's own validation
    PSNR where the file records it (``{"val": {"psnr_y": ..., "psnr_rgb": ...}, "val_data": ...}``), else {}."""
    if Path(path).suffix.lower() == ".onnx":
        params = quant_params_from_onnx(path)
        return qat_model_from_params(params), params, _int8_meta(onnx.load(str(path), load_external_data=False))
    qmodel, meta = read_qat_checkpoint(path)
    return qmodel, quant_params(qmodel), meta


def _int8_meta(proto: onnx.ModelProto) -> dict:
    props = {p.key: p.value for p in proto.metadata_props}
    val = {}
    for key in ("psnr_y", "psnr_rgb"):
        try:
            val[key] = float(props[key])
        except (KeyError, ValueError):
            pass
    if "psnr_y" not in val:
        return {}
    return {"val": val, **({"val_data": props["psnr_data"]} if props.get("psnr_data") else {})}


def load_qat_source(path: str | Path) -> QuantELSR:
    """The QAT (fake-quant) model of a ``.qat.pt`` checkpoint or of the INT8 ``.onnx`` built from one."""
    return load_int8_source(path)[0]
