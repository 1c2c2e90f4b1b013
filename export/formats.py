"""The export formats: one table drives ``elsr export``, the checks and validation of what it writes,
and the benchmark row that times it.

Each row knows its name (``--format``), file suffix, the optional package it needs and the pip extra
that installs it, its exporter, its checker and validator (both run the artifact in its own
runtime, which ``export.runtime.load_upscaler`` picks by suffix: onnxruntime for ``.onnx`` and
``.ort``, the LiteRT interpreter for ``.tflite``) and its benchmark backend (``benchmarks.backends``,
whose suffix lists come from this table).
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from elsr.errors import ElsrError
from elsr.imageio import list_images, mod_crop, read_image
from elsr.inference import image_to_array, super_resolve
from elsr.metrics import image_metrics, psnr
from elsr.model import ELSR
from elsr.quantization import QuantELSR, QuantParams, quant_params

from .onnx_fp32 import (CHECK_SHAPES, INPUT_NAME, MAX_CHECK_IMAGES, TOLERANCE, check_inputs, export_onnx,
                        onnx_metadata, require_parity)

log = logging.getLogger(__name__)

INT8_QUANTIZATION = "qat; qdq; int8 per-channel weights, int32 biases, uint8 activations"
# An INT8 artifact must agree with the QAT fake-quant model it comes from. onnxruntime does to the grey level
# on 99.9% of pixels; XNNPACK's int8 LeakyRelu uses 8-bit fractional multipliers, which leaves about 97% within
# one level (PSNR about 53 dB against the fake-quant output). A wrong graph is far below these bounds.
INT8_MAX_LEVELS = 16
INT8_MIN_PSNR = 40.0


@dataclass
class ExportRequest:
    """What to export: the FP32 model, and the QAT model when INT8 is asked."""

    model: ELSR
    meta: dict = field(default_factory=dict)
    qmodel: QuantELSR | None = None           # INT8 from these QAT weights and ranges (the fake-quant reference)
    params: QuantParams | None = None         # its integer parameters when they come from a file (else from qmodel)
    fixed_shape: tuple[int, int, int, int] | None = None   # NCHW; None: dynamic batch, height, width
    uint8_io: bool = False                    # TFLite: uint8 RGB in and out
    opset: int | None = None                  # FP32 ONNX/ORT only
    check_images: list[Path] = field(default_factory=list)

    @property
    def int8(self) -> bool:
        return self.qmodel is not None

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp32"

    @property
    def quant_params(self) -> QuantParams:
        return self.params if self.params is not None else quant_params(self.qmodel)


@dataclass
class Exported:
    files: list[Path]                         # the artifact first, then what goes with it
    lines: list[str] = field(default_factory=list)   # what was checked, for the console


# ------------------------------------------------------------------------------------------ checks


def _grid(x: np.ndarray) -> np.ndarray:
    return (np.round(x * 255) / 255).astype(np.float32)


def check_inputs_for(request: ExportRequest) -> tuple[list[str], list[np.ndarray]]:
    """(labels, NCHW float inputs): random inputs and real images, or crops of the fixed shape."""
    images = request.check_images[:MAX_CHECK_IMAGES]
    if request.fixed_shape is None:
        inputs = check_inputs(images)
        labels = ["random"] * len(CHECK_SHAPES) + [p.name for p in images]
    else:
        n, _, h, w = request.fixed_shape
        inputs = [np.random.default_rng(0).random(request.fixed_shape, dtype=np.float32)]
        labels = ["random"]
        for path in images:
            x = image_to_array(read_image(path, convert=True))
            if x.shape[2] >= h and x.shape[3] >= w:
                inputs.append(np.repeat(x[:, :, :h, :w], n, axis=0))
                labels.append(f"{path.name} (crop)")
    if request.uint8_io or request.int8:  # the INT8 input is the uint8 pixel grid; uint8 I/O takes pixels
        inputs = [_grid(x) for x in inputs]
    return labels, inputs


def check_artifact(request: ExportRequest, path: Path) -> list[str]:
    """Run the artifact in its own runtime on the check inputs: FP32 against PyTorch (tolerance 1e-4, or half a
    grey level with uint8 output), INT8 against the QAT fake-quant model (grey levels). ElsrError if it fails."""
    from .runtime import load_upscaler

    upscaler = load_upscaler(path, request.model.scale, device="cpu")
    labels, inputs = check_inputs_for(request)
    lines = []
    if not request.int8:
        model = request.model.cpu().eval()
        errors = []
        for x in inputs:
            with torch.no_grad():
                ref = model(torch.from_numpy(x)).numpy()
            if request.uint8_io:
                ref = np.clip(ref, 0, 1)
            errors.append((tuple(x.shape), float(np.abs(upscaler.run_array(x) - ref).max())))
        for label, (shape, error) in zip(labels, errors):
            lines.append(f"parity {label} {'x'.join(map(str, shape))}: max abs error {error:.2e}")
        tol = 0.5 / 255 + TOLERANCE if request.uint8_io else TOLERANCE
        try:
            require_parity(errors, path, tol)
        except ElsrError as exc:
            raise ElsrError(exc.problem, path=path, fix="re-export; report it if it persists") from exc
        return lines
    qmodel = request.qmodel.cpu().eval()
    for label, x in zip(labels, inputs):
        with torch.no_grad():
            ref = qmodel(torch.from_numpy(x)).numpy()
        levels = np.abs(upscaler.run_array(x) - ref) * 255
        mse = float((levels.astype(np.float64) ** 2).mean())
        agreement = float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
        lines.append(f"int8 vs QAT fake-quant {label} {'x'.join(map(str, x.shape))}: "
                     f"{100 * float((levels < 1e-3).mean()):.2f}% identical, "
                     f"{100 * float((levels <= 1 + 1e-3).mean()):.2f}% within one level, max {levels.max():.0f} levels, "
                     f"PSNR {agreement:.1f} dB")
        if not (levels.max() <= INT8_MAX_LEVELS and agreement >= INT8_MIN_PSNR):
            raise ElsrError(f"the INT8 model does not reproduce its QAT model ({lines[-1]})", path=path,
                            fix="re-export; report it if it persists")
    return lines


# ------------------------------------------------------------------------------------- INT8 sources


def _hidden_channels(scale: int, parameters: int | None, head_weight: np.ndarray, slope_size: int) -> int:
    """ELSR's hidden channel count: from the 'parameters' metadata, else the filters that are not zero padding."""
    from elsr.model import ModelConfig, count_parameters

    prelu = "shared" if slope_size == 1 else "channel"
    if parameters:
        for channels in range(1, head_weight.shape[0] + 1):
            if count_parameters(ELSR(ModelConfig(scale=scale, channels=channels, prelu=prelu))) == parameters:
                return channels
    used = np.flatnonzero(np.abs(head_weight).reshape(head_weight.shape[0], -1).sum(axis=1))
    return int(used.max()) + 1 if used.size else head_weight.shape[0]


def quant_params_from_onnx(path: str | Path) -> QuantParams:
    """The QAT parameters an elsr INT8 ONNX file was built from (``elsr quantize`` / ``elsr export --int8``).

    The file holds everything the integer graph needs: int8 weights with their scales, int32 biases
    with theirs, activation scales and zero points, the PReLU slope; the hidden channels' zero padding
    is dropped. Building the INT8 graph from them gives the same file again, so the bundled
    ``elsr_x4_int8.onnx`` can be turned into the other INT8 formats without its ``.qat.pt``.
    """
    import onnx
    from onnx import numpy_helper

    from elsr.model import ModelConfig
    from elsr.quantization import ConvParams, QuantParams

    path = Path(path)
    if not path.is_file():
        raise ElsrError("no such file", path=path, fix="pass the .qat.pt or INT8 .onnx written by 'elsr quantize'")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise ElsrError(f"cannot read this ONNX file: {exc}", path=path) from exc
    props = {p.key: p.value for p in proto.metadata_props}
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    names = ("input", "head", "body_conv1", "body_act", "body_conv2", "add", "tail")
    needed = [f"{n}_{k}" for n in ("head", "body_conv1", "body_conv2", "tail") for k in ("w", "w_scale", "b", "b_scale")]
    needed += [f"{n}_{k}" for n in names for k in ("scale", "zero_point")]
    if props.get("format") != "elsr-onnx" or not props.get("precision", "").startswith("int8") or \
            any(k not in inits for k in needed):
        raise ElsrError("not an INT8 ONNX model written by elsr", path=path,
                        fix="pass the .qat.pt or the INT8 .onnx written by 'elsr quantize --method qat'")
    leaky = [n for n in proto.graph.node if n.op_type == "LeakyRelu"]
    slope = (np.array([next(a.f for a in leaky[0].attribute if a.name == "alpha")], np.float32) if leaky
             else inits["body_act_slope"].reshape(-1).astype(np.float32))
    scale = int(props.get("scale") or 0) or int(round((inits["tail_w"].shape[0] / 3) ** 0.5))
    parameters = int(props["parameters"]) if props.get("parameters", "").isdigit() else None
    c = _hidden_channels(scale, parameters, inits["head_w"], slope.size)
    config = ModelConfig(scale=scale, channels=c, prelu="shared" if slope.size == 1 else "channel")
    outputs = {"head": c, "body_conv1": c, "body_conv2": c, "tail": 3 * scale * scale}
    inputs = {"head": 3, "body_conv1": c, "body_conv2": c, "tail": c}
    convs = {n: ConvParams(weight=inits[f"{n}_w"][:o, :inputs[n]].astype(np.int8),
                           weight_scale=inits[f"{n}_w_scale"][:o].astype(np.float32),
                           bias=inits[f"{n}_b"][:o].astype(np.int32),
                           bias_scale=inits[f"{n}_b_scale"][:o].astype(np.float32)) for n, o in outputs.items()}
    activations = {n: (float(inits[f"{n}_scale"]), int(inits[f"{n}_zero_point"])) for n in names}
    return QuantParams(config, convs, activations, slope[:c] if slope.size > 1 else slope)


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


def qat_model_from_onnx(path: str | Path) -> QuantELSR:
    """The fake-quant model of an elsr INT8 ONNX file (see ``quant_params_from_onnx``)."""
    return qat_model_from_params(quant_params_from_onnx(path))


def load_int8_source(path: str | Path) -> tuple[QuantELSR, QuantParams]:
    """(fake-quant model, integer parameters) from a ``.qat.pt`` checkpoint or from the INT8 ``.onnx`` built
    from one (whose parameters are taken as stored, bit for bit)."""
    from elsr.quantization import load_qat_checkpoint

    if Path(path).suffix.lower() == ".onnx":
        params = quant_params_from_onnx(path)
        return qat_model_from_params(params), params
    qmodel = load_qat_checkpoint(path)
    return qmodel, quant_params(qmodel)


def load_qat_source(path: str | Path) -> QuantELSR:
    """The QAT (fake-quant) model of a ``.qat.pt`` checkpoint or of the INT8 ``.onnx`` built from one."""
    return load_int8_source(path)[0]


# --------------------------------------------------------------------------------------- exporters


def onnx_model(request: ExportRequest):
    """The ONNX ModelProto of the request: FP32 (torch.onnx) or the INT8 QDQ graph; fixed shape if asked."""
    import onnx

    from .onnx_int8 import build_int8_model
    from .ort_format import fix_input_shape

    if request.int8:
        metadata = {**onnx_metadata(request.model, "int8", request.meta), "quantization": INT8_QUANTIZATION}
        proto = build_int8_model(request.quant_params, metadata)
    else:
        with tempfile.TemporaryDirectory(prefix="elsr-onnx-") as tmp:
            proto = onnx.load(str(export_onnx(request.model, Path(tmp) / "model.onnx", request.opset, request.meta)))
    if request.fixed_shape is not None:
        proto = fix_input_shape(proto, request.fixed_shape, INPUT_NAME)
    return proto


def _onnx_summary(path: Path) -> str:
    import onnx

    from .onnx_fp32 import onnx_opset

    return f"opset {onnx_opset(onnx.load(str(path), load_external_data=False))}"


def export_onnx_file(request: ExportRequest, out: Path) -> Exported:
    import onnx

    from .onnx_int8 import save_model

    if request.int8 or request.fixed_shape is not None:
        proto = onnx_model(request)
        onnx.checker.check_model(proto, full_check=True)
        save_model(proto, out)
    else:
        export_onnx(request.model, out, request.opset, request.meta, overwrite=True)
    return Exported([out], [f"ONNX {_onnx_summary(out)}, input {INPUT_NAME} float32 NCHW RGB in [0, 1]"])


def export_ort_file(request: ExportRequest, out: Path) -> Exported:
    from .ort_format import required_operators, summarize_usability, write_ort

    files, findings = write_ort(onnx_model(request), out)
    lines = [f"ORT format (Fixed optimization style, CPU EP), {'identical to' if request.int8 else 'matches'} "
             f"its ONNX model", f"required operators ({files[1].name}): {'; '.join(required_operators(files[1]))}"]
    for line in findings:
        log.debug("mobile usability: %s", line)
    lines += [f"mobile usability: {line}" for line in summarize_usability(findings)]
    return Exported(files, lines)


def export_tflite_file(request: ExportRequest, out: Path) -> Exported:
    from . import tflite

    meta = {**onnx_metadata(request.model, request.precision, request.meta), "format": "elsr-tflite"}
    for key in ("input", "output"):
        meta.pop(key, None)
    if request.int8:
        meta["quantization"] = ("qat; int8 per-channel weights, int32 biases, int8 activations "
                                "(our uint8 ranges shifted by 128)")
        data = tflite.int8_tflite(request.quant_params, request.fixed_shape, request.uint8_io, meta)
    else:
        data = tflite.fp32_tflite(request.model, request.fixed_shape, request.uint8_io, meta)
    tflite.save_tflite(data, out)
    contract = tflite.io_contract(request.precision, request.uint8_io, request.model.scale, request.fixed_shape)
    return Exported([out], [f"TFLite contract: {key} {value}" for key, value in contract.items()])


# --------------------------------------------------------------------------------------- validation


def validate(path: Path, model: ELSR, data: Path, convert: bool = False, threads: int = 0) -> dict:
    """Run an artifact with its own runtime on the HR images of ``data`` (MATLAB-bicubic LR, ``elsr eval``'s
    protocol) and score it against ground truth and against the FP32 PyTorch model's output."""
    from elsr.degrade import downscale

    from .runtime import load_upscaler

    upscaler = load_upscaler(path, model.scale, device="cpu", threads=threads)
    scale = model.scale
    model = model.cpu().eval()
    ours, fp32, agree = [], [], []
    for image_path in list_images(data):
        hr = mod_crop(read_image(image_path, convert), scale)
        lr = downscale(hr, scale)
        sr, ref = upscaler(lr), super_resolve(model, lr)
        ours.append(image_metrics(sr, hr, scale)["psnr_y"])
        fp32.append(image_metrics(ref, hr, scale)["psnr_y"])
        agree.append(psnr(sr, ref, scale, y_channel=True))
    finite = [a for a in agree if np.isfinite(a)]
    return {"data": str(data), "images": len(ours), "psnr_y": float(np.mean(ours)), "fp32_psnr_y": float(np.mean(fp32)),
            "delta_db": float(np.mean(ours) - np.mean(fp32)), "identical_images": len(agree) - len(finite),
            "psnr_y_vs_fp32": float(np.mean(finite)) if finite else float("inf")}


def format_validation(path: Path, result: dict) -> str:
    versus = ("identical to FP32" if not np.isfinite(result["psnr_y_vs_fp32"]) else
              f"{result['psnr_y_vs_fp32']:.2f} dB vs the FP32 output")
    data = Path(result["data"])
    label = data.parent.name if data.name == "HR" and data.parent.name else data.name or str(data)  # Set5/HR -> Set5
    return (f"validate {label} ({result['images']} images, "
            f"{path.name}): PSNR-Y {result['psnr_y']:.3f} dB, FP32 PyTorch {result['fp32_psnr_y']:.3f} dB, "
            f"{result['delta_db']:+.3f} dB; {versus}")


# ------------------------------------------------------------------------------------------- table


@dataclass(frozen=True)
class ExportFormat:
    """One output format and everything that depends on it."""

    name: str
    suffix: str
    description: str
    export: Callable[[ExportRequest, Path], Exported]   # writes the artifact (atomically)
    runtime: str                                          # what runs it (load_upscaler, by suffix); the backend kind
    backend: str                                          # benchmarks.backends row that times it
    check: Callable[[ExportRequest, Path], list[str]] = check_artifact        # parity / QAT agreement, at export
    validate: Callable[..., dict] = validate                                  # PSNR on real images, in its runtime
    requires: tuple[str, ...] = ()                        # Python packages beyond elsr's own dependencies
    extra: str | None = None                              # the pip extra that installs them
    companions: Callable[[Path], list[Path]] = lambda out: []  # other files the export writes
    uint8_io: bool = False                                # can take uint8 pixels in and out
    opset: bool = True                                    # --opset applies

    def ensure_available(self) -> None:
        """A one-line ElsrError naming the missing package and the extra to install, if any."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                fix = f"pip install 'elsr[{self.extra}]'" if self.extra else f"pip install {module}"
                raise ElsrError(f"--format {self.name} needs the optional package {module.replace('_', '-')!r}",
                                fix=fix)

    def default_name(self, scale: int, int8: bool, uint8_io: bool = False) -> Path:
        return Path(f"elsr_x{scale}{'_int8' if int8 else ''}{'_uint8io' if uint8_io else ''}{self.suffix}")


def _ort_companions(out: Path) -> list[Path]:
    from .ort_format import config_path

    return [config_path(out)]


FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat("onnx", ".onnx", "ONNX, one self-contained file (FP32, or INT8 QDQ with --int8)",
                         export_onnx_file, "onnxruntime", "ort-cpu", requires=("onnxscript",)),
    "ort": ExportFormat("ort", ".ort", "ORT format for ONNX Runtime Mobile, plus its required-operators config",
                        export_ort_file, "onnxruntime", "ort-cpu", requires=("onnxscript",),
                        companions=_ort_companions),
    "tflite": ExportFormat("tflite", ".tflite", "TFLite/LiteRT, NHWC (FP32, or INT8 from QAT with --int8)",
                           export_tflite_file, "tflite", "tflite", requires=("ai_edge_litert",), extra="tflite",
                           uint8_io=True, opset=False),
}


def suffixes(runtime: str) -> tuple[str, ...]:
    """The model-file suffixes that a runtime (a benchmark backend kind) runs."""
    return tuple(f.suffix for f in FORMATS.values() if f.runtime == runtime)

