"""ONNX and ORT-format models in onnxruntime: the one session factory, and the upscaler on top of it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from elsr.errors import ElsrError
from elsr.io.kinds import file_kind
from elsr.model.devices import DEVICES
from elsr.runtime.base import ModelInfo, Upscaler, check_scale, info_from_metadata, probe_scale
from elsr.runtime.contract import positive_int
from elsr.runtime.onnx_files import REEXPORT, check_ort_file, read_onnx

if TYPE_CHECKING:
    import onnxruntime as ort

ONNX_SUFFIXES = (".onnx", ".ort")   # an ORT-format file runs in the same onnxruntime session
QUANT_OPS = {"QuantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
CUDA_PROVIDER, CPU_PROVIDER = "CUDAExecutionProvider", "CPUExecutionProvider"


def onnx_providers(device: str) -> list[str]:
    """onnxruntime execution providers for ``device`` (auto, cpu or cuda)."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise ElsrError(f"unknown device {device!r}", fix=f"use one of {', '.join(DEVICES)}")
    has_cuda = CUDA_PROVIDER in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise ElsrError("--device cuda was asked but onnxruntime has no CUDA support here",
                        fix="use --device cpu or auto, or install onnxruntime-gpu")
    if device != "cpu" and has_cuda:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    return [CPU_PROVIDER]


def _describe(args) -> str:
    return ", ".join(f"{a.name} {a.type} {list(a.shape)}" for a in args) or "none"


def _is_image_tensor(arg) -> bool:
    return arg.type == "tensor(float)" and len(arg.shape) == 4 and arg.shape[1] == 3


def session_options(threads: int = 0) -> ort.SessionOptions:
    """The settings of every onnxruntime session: ``threads`` intra-op threads (0: onnxruntime's default),
    nodes one after another (inter-op 1), every graph optimization, onnxruntime's log quiet below errors."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def onnx_session(path: str | Path, device: str = "cpu", threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime session for an image-to-image model; ElsrError naming the file if it is not one."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ElsrError("no such model file", path=path, fix="check the path")
    providers = onnx_providers(device)
    if file_kind(path) == "ort":   # read before onnxruntime runs it: external data, finite weights
        check_ort_file(path)
    else:
        read_onnx(path)
    try:
        session = ort.InferenceSession(str(path), session_options(threads), providers=providers)
    except Exception as exc:  # onnxruntime's error types derive from Exception directly
        reason = (str(exc).rsplit("failed:", 1)[-1].strip().splitlines() or [""])[0]
        raise ElsrError(f"cannot load this ONNX model (corrupt, truncated or not ONNX): {reason}", path=path,
                        fix=REEXPORT) from exc
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1 or not all(map(_is_image_tensor, (*inputs, *outputs))):
        raise ElsrError(f"not an image model: expected one float Nx3xHxW input and output, found input(s) "
                        f"{_describe(inputs)} and output(s) {_describe(outputs)}", path=path,
                        fix="pass an ELSR model written by 'elsr export'")
    return session


def graph_session(model_bytes: bytes, threads: int = 0) -> ort.InferenceSession:
    """A CPU session of a serialized graph we built ourselves (such as one with extra outputs for debugging)."""
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, session_options(threads), providers=[CPU_PROVIDER])


def onnx_precision(path: Path, stored: str | None, notes: list[str]) -> str | None:
    """The precision of an ONNX file: its 'precision' metadata checked against the graph's operators (an
    ``.ort`` file's graph is not read: its metadata is taken as it is)."""
    if path.suffix.lower() != ".onnx":
        return stored
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    quantized = any(node.op_type in QUANT_OPS for node in graph.node)
    half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    found = "int8" if quantized else "fp16" if half else "fp32"
    if stored is None:
        notes.append(f"no 'precision' metadata: {found} from the graph's operators")
        return found
    if quantized and not stored.startswith("int8"):
        notes.append(f"metadata says precision {stored!r} but the graph is quantized: reported as int8")
        return found
    return stored


class OnnxUpscaler(Upscaler):
    """An ONNX (or ORT-format) model run with onnxruntime; pixels converted as for PyTorch."""

    def __init__(self, path: str | Path, scale: int | None = None, device: str = "auto", threads: int = 0) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.session = onnx_session(self.path, device, threads)
        self.device = "cuda" if self.session.get_providers()[0] == CUDA_PROVIDER else "cpu"
        self.input_name = self.session.get_inputs()[0].name
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        dims = self.session.get_inputs()[0].shape
        self.fixed_size = tuple(dims[2:]) if all(isinstance(d, int) and d > 0 for d in dims[2:]) else None
        self.fixed_batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
        self.scale = check_scale(self._model_scale(), scale, self.path, "ONNX")

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def _model_scale(self) -> int:
        """The ``scale`` metadata entry, else the ratio of output to input size on a blank image."""
        stored = self.metadata.get("scale")
        if stored is None:
            fixed = (self.fixed_batch or 1, self.fixed_size) if self.fixed_size else None
            return probe_scale(self.run_array, self.path, "add a 'scale' metadata entry, or " + REEXPORT, fixed)
        if positive_int(stored) is None:
            raise ElsrError(f"metadata scale {stored!r} is not a positive integer", path=self.path)
        return int(stored)

    def info(self) -> ModelInfo:
        notes: list[str] = []
        precision = onnx_precision(self.path, self.metadata.get("precision"), notes)
        info = info_from_metadata(self.path, self.metadata, precision)
        info.notes[:0] = notes
        return info

    def close(self) -> None:
        del self.session
