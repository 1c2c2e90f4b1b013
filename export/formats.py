"""The export formats: one table drives ``elsr export``, the checks and validation of what it writes,
and the benchmark row that times it.

Each row knows its name (``--format``), file suffix, the optional package it needs and the pip extra
that installs it, its exporter, its checker and validator (both run the artifact in its own runtime,
which ``elsr.runtime.loaders`` picks by suffix: onnxruntime for ``.onnx`` and ``.ort``, the LiteRT
interpreter for ``.tflite``) and the benchmark backend that times it.
"""

from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx

from elsr.errors import ElsrError
from elsr.export import tflite
from elsr.export.checks import check_artifact, validate
from elsr.export.delegates import onnx_readiness, tflite_readiness
from elsr.export.onnx_fp32 import export_onnx, onnx_opset
from elsr.export.onnx_int8 import INT8_QUANTIZATION, build_int8_model, save_model
from elsr.export.ort_format import config_path, fix_input_shape, required_operators, write_ort
from elsr.export.request import Exported, ExportRequest
from elsr.runtime.contract import INPUT_NAME, TFLITE_FORMAT_TAG, artifact_name, model_metadata

# --------------------------------------------------------------------------------------- exporters


def onnx_model(request: ExportRequest) -> onnx.ModelProto:
    """The ONNX ModelProto of the request: FP32 (torch.onnx) or the INT8 QDQ graph; fixed shape if asked."""
    if request.int8:
        metadata = {**model_metadata(request.model, "int8", request.artifact_meta), "quantization": INT8_QUANTIZATION}
        proto = build_int8_model(request.quant_params, metadata)
    else:
        with tempfile.TemporaryDirectory(prefix="elsr-onnx-") as tmp:
            proto = onnx.load(str(export_onnx(request.model, Path(tmp) / "model.onnx", request.opset, request.meta)))
    if request.fixed_shape is not None:
        proto = fix_input_shape(proto, request.fixed_shape, INPUT_NAME)
    return proto


def export_onnx_file(request: ExportRequest, out: Path) -> Exported:
    proto = onnx_model(request)
    onnx.checker.check_model(proto, full_check=True)
    save_model(proto, out)
    return Exported([out], [f"ONNX opset {onnx_opset(proto)}, input {INPUT_NAME} float32 NCHW RGB in [0, 1]",
                            *readiness_lines(proto)])


def export_ort_file(request: ExportRequest, out: Path) -> Exported:
    proto = onnx_model(request)
    files = write_ort(proto, out)
    lines = [f"ORT format (Fixed optimization style, CPU EP), {'identical to' if request.int8 else 'matches'} "
             f"its ONNX model", f"required operators ({files[1].name}): {'; '.join(required_operators(files[1]))}"]
    return Exported(files, [*lines, *readiness_lines(proto)])


def readiness_lines(proto: onnx.ModelProto) -> list[str]:
    """onnxruntime's mobile checker per execution provider, with its caveats checked on the graph."""
    return [f"mobile EP (onnxruntime checker): {report.line()}" for report in onnx_readiness(proto)]


def export_tflite_file(request: ExportRequest, out: Path) -> Exported:
    meta = {**model_metadata(request.model, request.precision, request.artifact_meta), "format": TFLITE_FORMAT_TAG}
    for key in ("input", "output"):
        meta.pop(key, None)
    if request.int8:
        meta["quantization"] = ("qat; int8 per-channel weights, int32 biases, int8 activations "
                                "(our uint8 ranges shifted by 128)")
        data = tflite.int8_tflite(request.quant_params, request.fixed_shape, request.io, meta)
    else:
        data = tflite.fp32_tflite(request.model, request.fixed_shape, request.io, meta)
    tflite.save_tflite(data, out)
    contract = tflite.io_contract(request.precision, request.io, request.model.scale, request.fixed_shape)
    lines = [f"TFLite contract: {key} {value}" for key, value in contract.items()]
    return Exported([out], [*lines, *(f"LiteRT: {line}" for line in tflite_readiness(out).lines())])


# ------------------------------------------------------------------------------------------- table


@dataclass(frozen=True)
class ExportFormat:
    """One output format and everything that depends on it."""

    name: str
    suffix: str
    description: str
    export: Callable[[ExportRequest, Path], Exported]   # writes the artifact (atomically)
    runtime: str                                          # what runs it (elsr.runtime.loaders, by suffix)
    backend: str                                          # benchmarks.backends row that times it
    check: Callable[[ExportRequest, Path], list[str]] = check_artifact        # parity / QAT agreement, at export
    validate: Callable[..., dict] = validate                                  # PSNR on real images, in its runtime
    requires: tuple[str, ...] = ()                        # Python packages beyond elsr's own dependencies
    extra: str | None = None                              # the pip extra that installs them
    companions: Callable[[Path], list[Path]] = lambda out: []  # other files the export writes
    io_modes: tuple[str, ...] = ("float",)                # the tensors it can have at its ends
    opset: bool = True                                    # --opset applies

    def ensure_available(self) -> None:
        """A one-line ElsrError naming the missing package and the extra to install, if any."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                fix = f"pip install 'elsr[{self.extra}]'" if self.extra else f"pip install {module}"
                raise ElsrError(f"--format {self.name} needs the optional package {module.replace('_', '-')!r}",
                                fix=fix)

    def default_name(self, scale: int, int8: bool, io: str = "float") -> Path:
        return artifact_name(scale, int8, self.suffix, tflite.TFLITE_IO[io].tag)


def _ort_companions(out: Path) -> list[Path]:
    return [config_path(out)]


FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat("onnx", ".onnx", "ONNX, one self-contained file (FP32, or INT8 QDQ with --int8)",
                         export_onnx_file, "onnxruntime", "ort-cpu", requires=("onnxscript",)),
    "ort": ExportFormat("ort", ".ort", "ORT format for ONNX Runtime Mobile, plus its required-operators config",
                        export_ort_file, "onnxruntime", "ort-cpu", requires=("onnxscript",),
                        companions=_ort_companions),
    "tflite": ExportFormat("tflite", ".tflite", "TFLite/LiteRT, NHWC (FP32, or INT8 from QAT with --int8)",
                           export_tflite_file, "tflite", "tflite", requires=("ai_edge_litert",), extra="tflite",
                           io_modes=tuple(tflite.TFLITE_IO), opset=False),
}

