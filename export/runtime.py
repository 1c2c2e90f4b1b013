"""One way to run any ELSR model file (PyTorch checkpoint, ONNX, ORT format or TFLite) on HWC uint8 RGB images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from elsr.checkpoint import load_model
from elsr.errors import ElsrError
from elsr.inference import array_to_image, image_to_array, resolve_device, super_resolve
from elsr.model import RECEPTIVE_RADIUS
from elsr.pretrained import MODELS, model_path
from elsr.tiling import upscale_tiled

if TYPE_CHECKING:
    import onnxruntime as ort

TORCH_SUFFIXES = (".pt", ".pth")
ONNX_SUFFIXES = (".onnx", ".ort")
TFLITE_SUFFIXES = (".tflite",)
DEVICES = ("auto", "cpu", "cuda")
PROBE_SIZE = 4  # side of the blank image run to find the scale of an ONNX model without metadata


class Upscaler(Protocol):
    """A loaded model: HWC uint8 RGB in, HWC uint8 RGB ``scale`` times larger out."""

    scale: int
    name: str

    def __call__(self, lr: np.ndarray) -> np.ndarray: ...

    def run_array(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 in [0, 1] -> NCHW float32 (the model's raw output, unclipped)."""
        ...


def onnx_providers(device: str) -> list[str]:
    """onnxruntime execution providers for ``device`` (auto, cpu or cuda)."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise ElsrError(f"unknown device {device!r}", fix=f"use one of {', '.join(DEVICES)}")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise ElsrError("--device cuda was asked but onnxruntime has no CUDA support here",
                        fix="use --device cpu or auto, or install onnxruntime-gpu")
    if device != "cpu" and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _describe(args) -> str:
    return ", ".join(f"{a.name} {a.type} {list(a.shape)}" for a in args) or "none"


def _is_image_tensor(arg) -> bool:
    return arg.type == "tensor(float)" and len(arg.shape) == 4 and arg.shape[1] == 3


def onnx_session(path: str | Path, device: str = "cpu", threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime session for an image-to-image model; ElsrError naming the file if it is not one.

    ``threads`` sets intra_op_num_threads (0: onnxruntime's default).
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ElsrError("no such model file", path=path, fix="check the path")
    providers = onnx_providers(device)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime's error types derive from Exception directly
        reason = str(exc).rsplit("failed:", 1)[-1].strip()
        raise ElsrError(f"cannot load this ONNX model (corrupt, truncated or not ONNX): {reason}", path=path,
                        fix="re-export it with 'elsr export'") from exc
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1 or not all(map(_is_image_tensor, (*inputs, *outputs))):
        raise ElsrError(f"not an image model: expected one float Nx3xHxW input and output, found input(s) "
                        f"{_describe(inputs)} and output(s) {_describe(outputs)}", path=path,
                        fix="pass an ELSR model written by 'elsr export'")
    return session


class TorchUpscaler:
    """A PyTorch checkpoint (model.pt), run with elsr.inference.super_resolve."""

    def __init__(self, path: str | Path, scale: int | None = None, device: str = "auto") -> None:
        self.model, self.checkpoint = load_model(path, scale)
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.scale = self.model.scale
        self.name = Path(path).name

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        return super_resolve(self.model, lr, self.device)

    def run_array(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()


class OnnxUpscaler:
    """An ONNX (or ORT-format) model, run with onnxruntime; pixels converted as for PyTorch (elsr.inference)."""

    def __init__(self, path: str | Path, scale: int | None = None, device: str = "auto", threads: int = 0) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.session = onnx_session(self.path, device, threads)
        self.input_name = self.session.get_inputs()[0].name
        dims = self.session.get_inputs()[0].shape
        self.fixed_size = tuple(dims[2:]) if all(isinstance(d, int) and d > 0 for d in dims[2:]) else None
        self.fixed_batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
        self.scale = self._model_scale()
        if scale is not None and scale != self.scale:
            raise ElsrError(f"ONNX model is a x{self.scale} model but x{scale} was asked", path=self.path,
                            fix=f"use --scale {self.scale}, or export a x{scale} checkpoint")

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def run_array(self, x: np.ndarray) -> np.ndarray:
        return self._run(np.ascontiguousarray(x, dtype=np.float32))

    def _model_scale(self) -> int:
        """The ``scale`` metadata entry, else the ratio of output to input size on a blank image."""
        stored = self.session.get_modelmeta().custom_metadata_map.get("scale")
        if stored is not None:
            if not stored.isdigit() or int(stored) < 1:
                raise ElsrError(f"metadata scale {stored!r} is not a positive integer", path=self.path)
            return int(stored)
        try:
            height, width = self._run(np.zeros((1, 3, PROBE_SIZE, PROBE_SIZE), np.float32)).shape[2:]
        except Exception as exc:  # onnxruntime's error types derive from Exception directly
            raise ElsrError(f"the model fails on a {PROBE_SIZE}x{PROBE_SIZE} image: {exc}", path=self.path) from exc
        if height != width or height % PROBE_SIZE or height == 0:
            raise ElsrError(f"cannot tell the scale: a {PROBE_SIZE}x{PROBE_SIZE} image gave {width}x{height}",
                            path=self.path, fix="add a 'scale' metadata entry, or re-export with 'elsr export'")
        return height // PROBE_SIZE

    def _image(self, lr: np.ndarray) -> np.ndarray:
        x = image_to_array(lr)
        if self.fixed_batch and self.fixed_batch > 1:
            x = np.repeat(x, self.fixed_batch, axis=0)
        return array_to_image(self._run(x)[:1])

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        if self.fixed_size is None:
            return self._image(lr)
        return fixed_size_tiles(self._image, lr, self.fixed_size, self.scale)


def fixed_size_tiles(upscale: Callable[[np.ndarray], np.ndarray], lr: np.ndarray, size: tuple[int, int], scale: int,
                     overlap: int = 2 * RECEPTIVE_RADIUS) -> np.ndarray:
    """``upscale(lr)`` for a model that only takes LR images of exactly ``size`` (height, width).

    Windows of that size, overlapping by ``overlap`` pixels of context and placed inside the image, so
    an image at least that large gives exactly what a dynamic-shape model gives. A smaller image is
    padded by edge replication, which changes the pixels within the receptive radius of its bottom and
    right edges.
    """
    height, width = lr.shape[:2]
    padded = np.pad(lr, ((0, max(size[0] - height, 0)), (0, max(size[1] - width, 0)), (0, 0)), mode="edge")
    return upscale_tiled(upscale, padded, scale, 0, overlap, window=size)[:height * scale, :width * scale]


class TfliteUpscaler:
    """A .tflite model, run with the LiteRT interpreter (XNNPACK on CPU); NHWC, float or uint8 I/O (export.tflite)."""

    def __init__(self, path: str | Path, scale: int | None = None, device: str = "auto", threads: int = 0) -> None:
        from .tflite import TfliteModel

        if device == "cuda":
            raise ElsrError("TFLite models run on the CPU here", path=path, fix="use --device cpu or auto")
        self.path = Path(path)
        self.name = self.path.name
        self.model = TfliteModel(self.path, threads or None)
        self.scale = self._model_scale()
        if scale is not None and scale != self.scale:
            raise ElsrError(f"TFLite model is a x{self.scale} model but x{scale} was asked", path=self.path,
                            fix=f"use --scale {self.scale}, or export a x{scale} checkpoint")

    def _model_scale(self) -> int:
        stored = self.model.metadata.get("scale")
        if stored is not None and stored.isdigit() and int(stored) > 0:
            return int(stored)
        try:
            height, width = self.run_array(np.zeros((1, 3, PROBE_SIZE, PROBE_SIZE), np.float32)).shape[2:]
        except Exception as exc:  # noqa: BLE001 - LiteRT raises ValueError/RuntimeError for unrunnable shapes
            raise ElsrError(f"the model fails on a {PROBE_SIZE}x{PROBE_SIZE} image: {exc}", path=self.path,
                            fix="re-export it with 'elsr export --format tflite'") from exc
        if height != width or height % PROBE_SIZE or height == 0:
            raise ElsrError(f"cannot tell the scale: a {PROBE_SIZE}x{PROBE_SIZE} image gave {width}x{height}",
                            path=self.path, fix="re-export it with 'elsr export --format tflite'")
        return height // PROBE_SIZE

    def run_array(self, x: np.ndarray) -> np.ndarray:
        return self.model(x)

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        y = self.model.forward(self.model.prepare(image_to_array(lr)))
        if self.model.nhwc and y.dtype == np.uint8 and self.model.output_is_pixels:
            return np.ascontiguousarray(y[0])  # uint8 I/O: the output already is the image
        return array_to_image(self.model.to_float(y))


def load_upscaler(path: str | Path, scale: int | None = None, device: str = "auto", threads: int = 0) -> Upscaler:
    """Load a checkpoint (.pt/.pth), ONNX model (.onnx/.ort) or TFLite model (.tflite); ``scale``, when given,
    must match it.

    ``threads`` applies to onnxruntime and LiteRT only. A bundled model's name (``x4-int8``, ...) is taken too.
    """
    path = model_path(str(path))
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        return TorchUpscaler(path, scale, device)
    if suffix in ONNX_SUFFIXES:
        return OnnxUpscaler(path, scale, device, threads)
    if suffix in TFLITE_SUFFIXES:
        return TfliteUpscaler(path, scale, device, threads)
    raise ElsrError(f"unknown model file type {path.suffix or '(no suffix)'!r}", path=path,
                    fix=f"use one of {', '.join(TORCH_SUFFIXES + ONNX_SUFFIXES + TFLITE_SUFFIXES)}, "
                        f"or a bundled model's name: {', '.join(MODELS)}")
