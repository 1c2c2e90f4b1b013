"""Runners: one model file loaded on one backend, ready to time on a prepared input.

A runner turns a float32 NCHW numpy input into its native form once (``prepare``), then runs it
(``forward``) as often as asked; ``timer`` says how to time one run. ``info`` describes the model.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from elsr.checkpoint import load_model
from elsr.errors import ElsrError
from elsr.inference import array_to_image, image_to_array
from elsr.model import ELSR, PRELU_MODES, SCALES, ModelConfig, count_parameters

from .timing import cuda_ms, wall_ms

QUANT_OPS = {"QuantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}
MAX_CHANNELS = 256  # search range when recovering an ELSR architecture from a parameter count


@dataclass
class ModelInfo:
    """What the report says about a loaded model."""

    precision: str
    params: int | None
    size_bytes: int
    config: ModelConfig | None            # for the MAC count; None when it cannot be known
    eval_model: Path | None               # the file `elsr eval` scores for this row (None: not possible)
    eval_device: str = "cpu"
    notes: list[str] = field(default_factory=list)


class Runner:
    """Base runner: numpy in, numpy out, wall-clock timing."""

    info: ModelInfo
    timer: Callable[[Callable[[], Any]], float] = staticmethod(wall_ms)

    def prepare(self, x: np.ndarray) -> Any:
        return x

    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def fetch(self, y: Any) -> np.ndarray:
        """The output of ``forward`` as a numpy array on the host (waits for it)."""
        return np.asarray(y)

    def upscale(self, frame: np.ndarray) -> np.ndarray:
        """HWC uint8 RGB in, HWC uint8 RGB out."""
        return array_to_image(self.fetch(self.forward(self.prepare(image_to_array(frame)))))

    @contextlib.contextmanager
    def active(self):
        """Process-wide settings (thread counts) while this runner runs."""
        yield self

    def gpu_peak_bytes(self) -> int | None:
        """GPU memory high-water mark since the runner was built, where the backend reports it."""
        return None

    def close(self) -> None:
        """Release the model (sessions, GPU memory)."""


class TorchRunner(Runner):
    """A checkpoint run by PyTorch: eager (NCHW or channels_last), torch.compile, CPU or CUDA, FP32 or FP16."""

    def __init__(self, path: Path, threads: int | None, *, device: str = "cpu", half: bool = False,
                 channels_last: bool = False, compiled: bool = False) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        model, _ = load_model(path)
        self.threads = threads
        self.dtype = torch.float16 if half else torch.float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(self.device, self.dtype).to(memory_format=self.memory_format)
        notes = ["PSNR not computed: elsr eval runs FP32 only"] if half else []
        self.info = ModelInfo("fp16" if half else "fp32", count_parameters(model), path.stat().st_size,
                              model.config, None if half else path, device, notes)
        self.model = torch.compile(model) if compiled else model
        if self.device.type == "cuda":
            self.timer = cuda_ms

    def prepare(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self.device, self.dtype).contiguous(memory_format=self.memory_format)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def fetch(self, y: torch.Tensor) -> np.ndarray:
        return y.float().cpu().numpy()

    @contextlib.contextmanager
    def active(self):
        previous = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            yield self
        finally:
            torch.set_num_threads(previous)

    def gpu_peak_bytes(self) -> int | None:
        return torch.cuda.max_memory_allocated() if self.device.type == "cuda" else None

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def elsr_config(scale: int, params: int) -> ModelConfig | None:
    """The ELSR architecture of this scale with exactly ``params`` parameters, if there is one."""
    if scale not in SCALES:
        return None
    with torch.device("meta"):
        for channels in range(1, MAX_CHANNELS + 1):
            for prelu in PRELU_MODES:
                config = ModelConfig(scale=scale, channels=channels, prelu=prelu)
                if count_parameters(ELSR(config)) == params:
                    return config
    return None


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def onnx_info(path: Path, metadata: dict[str, str], device: str = "cpu") -> ModelInfo:
    """Precision (metadata 'precision', checked against the graph), parameters and architecture of an ONNX model."""
    notes: list[str] = []
    precision = metadata.get("precision")
    if path.suffix.lower() == ".onnx":
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        quantized = any(node.op_type in QUANT_OPS for node in graph.node)
        half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
        found = "int8" if quantized else "fp16" if half else "fp32"
        if precision is None:
            precision = found
            notes.append(f"no 'precision' metadata: {found} from the graph's operators")
        elif quantized and not precision.startswith("int8"):
            notes.append(f"metadata says precision {precision!r} but the graph is quantized: reported as int8")
            precision = found
    method = (metadata.get("quantization") or "").split(";")[0].strip()
    if precision and method:
        precision = f"{precision} {method}"
    params, scale = _int(metadata.get("parameters")), _int(metadata.get("scale"))
    config = elsr_config(scale, params) if params and scale else None
    if config is None:
        notes.append("GMAC/s unknown: no 'scale'/'parameters' metadata matching an ELSR architecture")
    return ModelInfo(precision or "unknown", params, path.stat().st_size, config, path, device, notes)


class OrtRunner(Runner):
    """An ONNX or ORT-format model run by onnxruntime, with the settings of a plain timing loop."""

    def __init__(self, path: Path, threads: int | None, *, provider: str = "CPUExecutionProvider") -> None:
        import onnxruntime as ort

        if not path.is_file():
            raise ElsrError("no such model file", path=path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=[provider])
        except Exception as exc:  # onnxruntime's errors derive from Exception directly
            reason = str(exc).rsplit("failed:", 1)[-1].strip().splitlines()[0]
            raise ElsrError(f"onnxruntime cannot load it: {reason}", path=path) from exc
        self.input_name = self.session.get_inputs()[0].name
        device = "cuda" if provider.startswith("CUDA") else "cpu"
        self.info = onnx_info(path, self.session.get_modelmeta().custom_metadata_map, device)

    def prepare(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}

    def forward(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feed)[0]

    def close(self) -> None:
        del self.session


def tflite_interpreter_class():
    """The LiteRT Interpreter class (package ai-edge-litert, the ``tflite`` extra), or None when not installed."""
    from export import tflite

    return tflite.interpreter_class() if tflite.available() else None


class TfliteRunner(Runner):
    """A .tflite model run by the LiteRT interpreter with its default XNNPACK delegate on ``threads`` threads.

    The input is converted once, outside the timing, to the model's own tensor (NHWC; float32, or the
    uint8 pixels of a ``--uint8-io`` model), as a phone app hands it over.
    """

    def __init__(self, path: Path, threads: int | None) -> None:
        from export.tflite import TfliteModel

        self.model = TfliteModel(path, threads or None)
        metadata = self.model.metadata
        io = f"{self.model.input_dtype} I/O"
        info = onnx_info(path, metadata) if metadata else None
        notes = [] if metadata else ["no elsr metadata: precision from the input type, GMAC/s unknown"]
        precision = info.precision if info else io
        self.info = ModelInfo(f"{precision}, {io}" if info else precision, info.params if info else None,
                              path.stat().st_size, info.config if info else None, path,
                              notes=(info.notes if info else []) + notes)

    def prepare(self, x: np.ndarray) -> np.ndarray:
        return self.model.prepare(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.model.forward(x)

    def fetch(self, y: np.ndarray) -> np.ndarray:
        return self.model.to_float(y)

    def close(self) -> None:
        del self.model
