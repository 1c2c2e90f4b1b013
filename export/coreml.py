"""Core ML models (.mlpackage, ML Program) of ELSR, written op by op with coremltools' MIL builder.

The program is the network as Core ML's own operators: conv, leaky_relu (the shared PReLU slope; prelu for
per-channel slopes), conv, add, conv, pixel_shuffle, with image scaling at the ends (the input image's pixels
times 1/255, the output times 255 and clipped to [0, 255]). Precisions:

- FP32 and FP16 (``--fp16``: Core ML computes in float16, casts at the ends; what the Neural Engine runs);
- INT8 (``--int8``, from our QAT result): the weights are ``constexpr_affine_dequantize`` of our int8
  per-channel integers and scales (the integer graph's convs: on a split skip path two copies per hidden
  channel on head, body_conv2 and the add, as in every INT8 artifact), the biases our int32 ones times their scales, and every activation our QAT
  quantizes passes a ``quantize`` (uint8, our scale and zero point) and ``dequantize`` pair: the W8A8 form
  coremltools' own ``linear_quantize_activations`` writes, which Core ML runs with int8 arithmetic where the
  hardware has it (A17 Pro, M4 and later), and which computes exactly our fake-quant model. coremltools can
  write that form on Linux from known ranges; it only calibrates ranges (which we do not need) by running the
  model, which needs macOS.

The I/O contract is what an iOS app hands over: input ``lr`` an RGB image (a ``CVPixelBuffer``; Core ML converts
from BGRA) of any size from ``MIN_LR_SIDE`` to ``MAX_LR`` (flexible: ``imageSizeRange``), output ``sr`` an RGB
image ``scale`` times larger. coremltools declares a flexible output image's size range as 1..unbounded (its
workaround for a Core ML bug with flexible image outputs, rdar://122895892).

Nothing here runs the model: Core ML runs on Apple platforms only. What Linux allows is checked instead
(``inspect_package``): the program's operators, its I/O description, and its weights read back from the
package and compared with ours.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from elsr.errors import ElsrError
from elsr.export.request import ExportRequest
from elsr.io.files import atomic_folder
from elsr.model.network import DEFAULT_FRAME, MIN_LR_SIDE, ELSR
from elsr.quant.params import QuantParams
from elsr.runtime.contract import COPIES_KEY, COREML_FORMAT_TAG, INPUT_NAME, OUTPUT_NAME, model_metadata
from elsr.runtime.coreml_model import import_coremltools, quiet

MAX_LR = (540, 960)                    # the largest LR image (4K UHD out), as the ExecuTorch program's bound
DEPLOYMENT_TARGET = "iOS17"            # quantize/dequantize ops need iOS 17 / macOS 14
CONVS = ("head", "body_conv1", "body_conv2", "tail")
ACTIVATION_ORDER = ("input", "head", "body_conv1", "body_act", "body_conv2", "add", "tail")  # where QAT quantizes
ALLOWED_OPS = {   # the operators an ELSR program may hold, and why
    "conv": "network", "leaky_relu": "network", "prelu": "network", "add": "network", "pixel_shuffle": "network",
    "mul": "image scaling", "clip": "image scaling", "cast": "fp16 casts", "quantize": "int8 activations",
    "dequantize": "int8 activations", "constexpr_affine_dequantize": "int8 weights", "const": "constants",
}


@dataclass
class Layer:
    """One conv as written into the program: float weights and biases, or int8 weights with per-channel scales."""

    weight: np.ndarray            # float32, or int8 with ``scale``
    bias: np.ndarray              # float32
    scale: np.ndarray | None = None


def fp32_layers(model: ELSR) -> dict[str, Layer]:
    return {name: Layer(getattr(model, name).weight.detach().float().numpy(),
                        getattr(model, name).bias.detach().float().numpy()) for name in CONVS}


def int8_layers(params: QuantParams) -> dict[str, Layer]:
    """Our QAT integers as the integer graph holds them (``integer_convs``: on a split skip path head and
    body_conv2 give each hidden channel twice, body_conv1 and tail take both copies): int8 weights with their
    scales; biases int32 x scale (exact in float64, then float32)."""
    return {name: Layer(c.weight.astype(np.int8), (c.bias.astype(np.float64) * c.bias_scale).astype(np.float32),
                        c.weight_scale.astype(np.float32)) for name, c in params.integer_convs().items()}


class _Program:
    """Builds the MIL operations of one ELSR function (inside ``mb.program``)."""

    def __init__(self, mb, layers: dict[str, Layer], activations: dict[str, tuple[float, int]] | None) -> None:
        self.mb, self.layers, self.activations = mb, layers, activations

    def fake_quant(self, x, name: str):
        """quantize -> dequantize with our uint8 range of ``name`` (nothing for FP32/FP16)."""
        if self.activations is None:
            return x
        scale, zero_point = self.activations[name]
        kwargs = {"scale": np.float32(scale), "zero_point": np.uint8(zero_point)}
        q = self.mb.quantize(input=x, output_dtype="uint8", name=f"{name}_q", **kwargs)
        return self.mb.dequantize(input=q, name=f"{name}_dq", **kwargs)

    def conv(self, x, name: str):
        layer = self.layers[name]
        weight = layer.weight if layer.scale is None else self.mb.constexpr_affine_dequantize(
            quantized_data=layer.weight, zero_point=np.int8(0), scale=layer.scale, axis=0, name=f"{name}_weight")
        return self.fake_quant(self.mb.conv(x=x, weight=weight, bias=layer.bias, pad_type="same", name=name), name)

    def forward(self, x, slope: np.ndarray, scale: int):
        mb = self.mb
        head = self.conv(self.fake_quant(x, "input"), "head")
        c1 = self.conv(head, "body_conv1")
        act = (mb.leaky_relu(x=c1, alpha=float(slope.reshape(-1)[0]), name="body_act") if slope.size == 1 else
               mb.prelu(x=c1, alpha=slope.reshape(-1).astype(np.float32), name="body_act"))
        c2 = self.conv(self.fake_quant(act, "body_act"), "body_conv2")
        added = self.fake_quant(mb.add(x=head, y=c2, name="add"), "add")
        y = mb.pixel_shuffle(x=self.conv(added, "tail"), upscale_factor=scale, name="pixel_shuffle")
        return mb.clip(x=mb.mul(x=y, y=np.float32(255), name="to_pixels"), alpha=np.float32(0), beta=np.float32(255),
                       name=OUTPUT_NAME)


def coreml_metadata(request: ExportRequest) -> dict[str, str]:
    scale = request.model.scale
    meta = {**model_metadata(request.model, request.precision, request.artifact_meta), "format": COREML_FORMAT_TAG,
            "layout": "image", "value_range": "0..255", "shape": "flexible",
            "max_height": str(MAX_LR[0]), "max_width": str(MAX_LR[1]),
            "contract_input": f"{INPUT_NAME}: RGB image, {MIN_LR_SIDE}..{MAX_LR[1]} wide, "
                              f"{MIN_LR_SIDE}..{MAX_LR[0]} high",
            "contract_output": f"{OUTPUT_NAME}: RGB image, {scale}x the input's width and height"}
    for key in ("input", "output"):
        meta.pop(key, None)
    if request.int8:
        meta["quantization"] = ("qat; int8 per-channel weights (constexpr_affine_dequantize), uint8 activations "
                                "(quantize/dequantize with our ranges)")
        meta[COPIES_KEY] = str(request.quant_params.copies)
    return meta


def coreml_model(request: ExportRequest):
    """The coremltools MLModel (ML Program) of the request."""
    ct = import_coremltools()
    mb = ct.converters.mil.Builder
    symbol = ct.converters.mil.mil.get_new_symbol
    int8 = request.int8
    layers = int8_layers(request.quant_params) if int8 else fp32_layers(request.model)
    slope = request.quant_params.slope if int8 else request.model.body_act.weight.detach().float().numpy()
    program = _Program(mb, layers, request.quant_params.activations if int8 else None)
    target = getattr(ct.target, DEPLOYMENT_TARGET)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, symbol(), symbol()))], opset_version=target)
    def elsr(lr):
        return program.forward(lr, slope, request.model.scale)

    layout = ct.colorlayout.RGB
    shape = ct.Shape((1, 3, ct.RangeDim(MIN_LR_SIDE, MAX_LR[0], DEFAULT_FRAME[0]),
                      ct.RangeDim(MIN_LR_SIDE, MAX_LR[1], DEFAULT_FRAME[1])))
    elsr.functions["main"].set_output_types([ct.ImageType(name=OUTPUT_NAME, color_layout=layout)])
    precision = ct.precision.FLOAT16 if request.precision == "fp16" else ct.precision.FLOAT32
    with quiet():
        model = ct.convert(elsr, convert_to="mlprogram", minimum_deployment_target=target, compute_precision=precision,
                           inputs=[ct.ImageType(name=INPUT_NAME, shape=shape, scale=1 / 255, color_layout=layout)])
    model.short_description = f"ELSR x{request.model.scale} super-resolution ({request.precision})"
    model.user_defined_metadata.update(coreml_metadata(request))
    return model


def save_package(model, out: Path) -> Path:
    """Write the package (a folder) atomically: built beside it, renamed into place."""
    with atomic_folder(out) as staged, quiet():
        model.save(str(staged))
    return out


# ------------------------------------------------------------------------------------------ reading back


@dataclass
class PackageReport:
    """What a .mlpackage holds, read back without running it."""

    ops: list[str]                                   # the program's operators, in order (consts left out)
    inputs: list[str]                                # 'lr: image RGB, 9..960 x 9..540'
    outputs: list[str]
    metadata: dict[str, str]
    weights: dict[str, np.ndarray] = field(default_factory=dict)        # conv name -> weight as stored (int8/float)
    weight_scales: dict[str, np.ndarray] = field(default_factory=dict)  # INT8: conv name -> per-channel scale
    biases: dict[str, np.ndarray] = field(default_factory=dict)         # conv name -> bias as stored
    activations: dict[str, tuple[float, int]] = field(default_factory=dict)  # quantize name -> (scale, zero point)
    add_inputs: list[tuple[float, int]] = field(default_factory=list)  # the dequantize ops feeding the add

    @property
    def unexpected(self) -> list[str]:
        return sorted({op for op in self.ops if op not in ALLOWED_OPS})

    def lines(self) -> list[str]:
        count = Counter(self.ops)
        ops = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in count.items())
        return [f"Core ML program ({len(self.ops)} operators): {ops}", *(f"Core ML input {i}" for i in self.inputs),
                *(f"Core ML output {o}" for o in self.outputs)]


def _feature(description) -> str:
    kind = description.type.WhichOneof("Type")
    if kind == "imageType":
        image = description.type.imageType
        space = type(image).ColorSpace.Name(image.colorSpace)
        size = image.imageSizeRange
        bounds = (f"{size.widthRange.lowerBound}..{size.widthRange.upperBound} wide, "
                  f"{size.heightRange.lowerBound}..{size.heightRange.upperBound} high" if image.HasField("imageSizeRange")
                  else f"{image.width}x{image.height}")
        return f"{description.name}: image {space}, {bounds} (-1: unbounded)"
    if kind == "multiArrayType":
        array = description.type.multiArrayType
        return f"{description.name}: MLMultiArray {type(array).ArrayDataType.Name(array.dataType)}"
    return f"{description.name}: {kind}"


def inspect_package(path: Path) -> PackageReport:
    """Operators, I/O and weights of a Core ML package, from its spec and weight file (nothing is run)."""
    ct = import_coremltools()
    load = import_coremltools("coremltools.converters.mil.frontend.milproto.load").load
    try:
        with quiet():
            model = ct.models.MLModel(str(path), skip_model_load=True)
            spec = model.get_spec()
            program = load(spec, spec.specificationVersion, model.weights_dir)
    except Exception as exc:  # noqa: BLE001 - protobuf and coremltools raise many types on a damaged package
        raise ElsrError(f"cannot read this Core ML package: {' '.join(str(exc).split())[:200]}", path=path,
                        fix="re-export it with 'elsr export --format coreml'") from exc
    report = PackageReport([], [_feature(d) for d in spec.description.input],
                           [_feature(d) for d in spec.description.output], dict(spec.description.metadata.userDefined))
    operations = list(program.functions["main"].operations)
    report.ops = [op.op_type for op in operations if op.op_type != "const"]
    _collect(operations, report)
    return report


def _collect(operations: list, report: PackageReport) -> None:
    """The weights and activation ranges of a program, by position (coremltools' passes rename operations): the
    convs in order are head, body_conv1, body_conv2, tail; the quantize ops follow ACTIVATION_ORDER."""
    for name, conv in zip(CONVS, [op for op in operations if op.op_type == "conv"]):
        report.biases[name] = np.asarray(conv.bias.val)
        source = conv.weight.op
        if source is not None and source.op_type == "constexpr_affine_dequantize":
            report.weights[name] = np.asarray(source.quantized_data.val)
            report.weight_scales[name] = np.asarray(source.scale.val, np.float32).reshape(-1)
        elif conv.weight.val is not None:
            report.weights[name] = np.asarray(conv.weight.val)
    for name, op in zip(ACTIVATION_ORDER, [op for op in operations if op.op_type == "quantize"]):
        report.activations[name] = _range(op)
    add = next((op for op in operations if op.op_type == "add"), None)
    if add is not None:
        report.add_inputs = [_range(v.op) for v in (add.x, add.y) if v.op is not None and v.op.op_type == "dequantize"]


def _range(op) -> tuple[float, int]:
    """(scale, zero point) of a quantize or dequantize op (an omitted zero point is 0)."""
    zero_point = op.inputs.get("zero_point")
    return float(op.scale.val), 0 if zero_point is None else int(zero_point.val)


def compare_weights(report: PackageReport, request: ExportRequest) -> list[str]:
    """The weights read back against ours: INT8 integers and scales equal, float weights within float16's step."""
    expected = int8_layers(request.quant_params) if request.int8 else fp32_layers(request.model)
    lines, bad = [], []
    for name, layer in expected.items():
        stored = report.weights.get(name)
        if stored is None or stored.shape != layer.weight.shape:
            bad.append(f"{name}: {'missing' if stored is None else f'shape {stored.shape}'}")
            continue
        bias_error = float(np.abs(report.biases[name].astype(np.float32) - layer.bias).max())
        tolerance = 1e-3 * float(np.abs(layer.bias).max()) if request.precision == "fp16" else 0.0
        if layer.scale is not None:
            same = np.array_equal(stored, layer.weight) and np.array_equal(report.weight_scales[name], layer.scale)
            lines.append(f"{name}: int8 weights and scales {'equal to' if same else 'DIFFER from'} our QAT integers; "
                         f"biases max abs difference {bias_error:.2e}")
        else:
            error = float(np.abs(stored.astype(np.float32) - layer.weight).max())
            same = error <= (1e-3 * float(np.abs(layer.weight).max()) if request.precision == "fp16" else 0.0)
            lines.append(f"{name}: weights max abs difference {error:.2e}, biases {bias_error:.2e} ({stored.dtype})")
        same = same and bias_error <= tolerance
        if not same:
            bad.append(name)
    if request.int8:
        same = _same_ranges(report, request.quant_params.activations)
        lines.append(f"activation ranges (scale, uint8 zero point) of {', '.join(ACTIVATION_ORDER)}: "
                     f"{'the same integer function as' if same else 'DIFFER from'} our QAT ranges (the add's three "
                     f"scales divided by its second input's, coremltools' scale normalization for binary ops)")
        bad += [] if same else ["activation ranges"]
    if bad:
        raise ElsrError(f"the Core ML package does not hold our weights ({'; '.join(bad)})",
                        fix="re-export; report it if it persists")
    return lines


def _same_ranges(report: PackageReport, ours: dict[str, tuple[float, int]]) -> bool:
    """Every quantize op has our scale and zero point; the add's may be rescaled together (the same integers)."""
    ours32 = {k: (float(np.float32(s)), z) for k, (s, z) in ours.items()}
    if set(report.activations) != set(ours32) or len(report.add_inputs) != 2:
        return False
    if any(report.activations[k] != v for k, v in ours32.items() if k != "add"):
        return False
    (sx, zx), (sy, zy), (sz, zz) = report.add_inputs[0], report.add_inputs[1], report.activations["add"]
    (hx, hzx), (hy, hzy), (hz, hzz) = ours32["head"], ours32["body_conv2"], ours32["add"]
    ratios = np.array([sx / sz, sy / sz]), np.array([hx / hz, hy / hz])
    return (zx, zy, zz) == (hzx, hzy, hzz) and bool(np.allclose(*ratios, rtol=1e-6, atol=0))


def check_package(request: ExportRequest, path: Path) -> list[str]:
    """What Linux allows: the operators (only those of ELSR, image scaling, casts and quantization), the I/O
    (RGB images), the metadata and the weights against ours. ElsrError if any is off."""
    report = inspect_package(path)
    if report.unexpected:
        raise ElsrError(f"unexpected Core ML operators: {', '.join(report.unexpected)}", path=path,
                        fix="re-export; report it if it persists")
    if not all(": image RGB" in line for line in [*report.inputs, *report.outputs]):
        raise ElsrError(f"the I/O is not RGB images: {report.inputs + report.outputs}", path=path)
    if report.metadata.get("scale") != str(request.model.scale):
        raise ElsrError(f"metadata scale {report.metadata.get('scale')!r}, expected {request.model.scale}", path=path)
    return [*report.lines(), *(f"read back: {line}" for line in compare_weights(report, request)),
            "not run: Core ML runs on Apple platforms (macOS, iOS)"]

