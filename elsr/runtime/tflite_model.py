"""TFLite (LiteRT) models in the LiteRT interpreter, with its default XNNPACK delegate on the CPU.

The interpreter and the flatbuffer schema come from the optional ``ai-edge-litert`` package
(``pip install 'elsr[tflite]'``); everything here says so in one line when it is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import numpy as np

from elsr.errors import ElsrError
from elsr.model.inference import array_to_image, image_to_array
from elsr.model.weights import refuse_non_finite
from elsr.runtime.base import ModelInfo, Upscaler, check_scale, probe_scale, typed_io_info
from elsr.runtime.contract import TFLITE_METADATA_KEY, positive_int

TFLITE_SUFFIXES = (".tflite",)
LITERT_PACKAGE = "ai_edge_litert"       # the module the tflite extra installs
EXTRA_HINT = "pip install 'elsr[tflite]'"
FILE_IDENTIFIER = b"TFL3"
REEXPORT = "re-export it with 'elsr export --format tflite'"
FLOAT_TYPES = {0: np.float32, 1: np.float16, 10: np.float64}   # schema TensorType FLOAT32, FLOAT16, FLOAT64


def litert_available() -> bool:
    return importlib.util.find_spec(LITERT_PACKAGE) is not None


def require_litert() -> None:
    """ElsrError with the install hint when the LiteRT package is missing."""
    if not litert_available():
        raise ElsrError(f"TFLite support needs the optional package {LITERT_PACKAGE.replace('_', '-')!r}",
                        fix=EXTRA_HINT)


def schema():
    """LiteRT's generated flatbuffer bindings of the TFLite schema (reading and writing .tflite files)."""
    require_litert()
    return importlib.import_module(f"{LITERT_PACKAGE}.schema_py_generated")


def interpreter_class():
    require_litert()
    return importlib.import_module(f"{LITERT_PACKAGE}.interpreter").Interpreter


def read_metadata(path: str | Path) -> dict[str, str]:
    """Our metadata entry of a .tflite file ({} when it has none); ElsrError if it is not a TFLite model."""
    s = schema()
    data = Path(path).read_bytes()
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ElsrError("not a TFLite model (no TFL3 identifier)", path=path, fix="export it with 'elsr export'")
    try:
        model = s.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() == TFLITE_METADATA_KEY.encode():
                raw = bytes(model.Buffers(entry.Buffer()).DataAsNumpy())
                try:
                    return json.loads(raw.decode())
                except (ValueError, UnicodeDecodeError):
                    return {}
    except Exception as exc:  # noqa: BLE001 - flatbuffers raises struct/Type/Index errors on a damaged file
        raise ElsrError(f"damaged TFLite model ({type(exc).__name__} while reading its tables)", path=path,
                        fix=REEXPORT) from exc
    return {}


def _buffer_bytes(model, data: bytes, index: int) -> bytes:
    """The bytes of buffer ``index``: inside the flatbuffer, or (models over 2 GB) at an offset after it."""
    buffer = model.Buffers(index)
    if buffer.Offset() > 1:
        start, end = buffer.Offset(), buffer.Offset() + buffer.Size()
        if end > len(data):
            raise ValueError(f"buffer {index} ends at byte {end}, after the file's end")
        return data[start:end]
    return b"" if buffer.DataIsNone() else buffer.DataAsNumpy().tobytes()


def _weights(model, data: bytes):
    """(name, values) of every float constant tensor and every quantization scale of every subgraph."""
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            name = (tensor.Name() or b"").decode("utf-8", "replace")
            quantization = tensor.Quantization()
            if quantization is not None and not quantization.ScaleIsNone():
                yield f"{name} (quantization scale)", quantization.ScaleAsNumpy()
            dtype = FLOAT_TYPES.get(tensor.Type())
            if dtype is not None and tensor.Buffer() > 0:
                raw = _buffer_bytes(model, data, tensor.Buffer())
                if raw:
                    yield name, np.frombuffer(raw, dtype)


def check_weights(path: str | Path) -> None:
    """Refuse a .tflite file whose constant float tensors or quantization scales are not finite (read before the
    interpreter runs it)."""
    data = Path(path).read_bytes()
    try:
        named = list(_weights(schema().Model.GetRootAs(data, 0), data))
    except Exception as exc:  # noqa: BLE001 - flatbuffers raises struct/Type/Index errors on a damaged file
        raise ElsrError(f"damaged TFLite model ({type(exc).__name__} while reading its tensors)", path=path,
                        fix=REEXPORT) from exc
    refuse_non_finite(named, path)


class TfliteModel:
    """A .tflite image model in the LiteRT interpreter: NCHW float in, NCHW float out, any size.

    Works with any image-to-image model with one NHWC (or NCHW) RGB input and output, float or
    quantized (int8/uint8 tensors are (de)quantized with their own scale and zero point).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ElsrError("no such model file", path=self.path, fix="check the path")
        self.metadata = read_metadata(self.path)
        check_weights(self.path)
        try:
            self.interpreter = interpreter_class()(model_path=str(self.path), num_threads=threads or None)
        except (ValueError, RuntimeError) as exc:
            raise ElsrError(f"the LiteRT interpreter cannot load it: {str(exc).strip().splitlines()[0]}",
                            path=self.path, fix=REEXPORT) from exc
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1 or 3 not in (inputs[0]["shape"][-1], inputs[0]["shape"][1]):
            raise ElsrError("not an image model: expected one RGB input and one output", path=self.path)
        self.input, self.output = inputs[0], outputs[0]
        self.nhwc = int(self.input["shape"][-1]) == 3
        self._shape: tuple[int, ...] | None = None

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self.input["dtype"])

    @staticmethod
    def _pixel_offset(detail: dict) -> int | None:
        """128 for int8 pixels minus 128, 0 for uint8 pixels (both on the grid 1/255), None for anything else."""
        scale, zero_point = detail["quantization"]
        dtype = np.dtype(detail["dtype"])
        pixel_grids = ((np.dtype(np.uint8), 0), (np.dtype(np.int8), -128))
        if abs(scale * 255 - 1) > 1e-6 or (dtype, zero_point) not in pixel_grids:
            return None
        return -zero_point

    @property
    def pixels_in(self) -> bool:
        """The input takes RGB pixels as bytes (uint8, or int8 minus 128) in NHWC."""
        return self.nhwc and self._pixel_offset(self.input) is not None

    @property
    def pixels_out(self) -> bool:
        """The output gives RGB pixels as bytes (uint8, or int8 minus 128) in NHWC."""
        return self.nhwc and self._pixel_offset(self.output) is not None

    def prepare_pixels(self, lr: np.ndarray) -> np.ndarray:
        """A HWC uint8 RGB image as this pixel-input model's own tensor (1xHxWx3), with no float step."""
        x = lr[None] if self.input_dtype == np.uint8 else (lr[None] ^ np.uint8(128)).view(np.int8)
        x = np.ascontiguousarray(x)
        self._resize(x.shape)
        return x

    def to_pixels(self, y: np.ndarray) -> np.ndarray:
        """This pixel-output model's raw output (1xHxWx3) as an HWC uint8 RGB image."""
        y = y[0] if y.dtype == np.uint8 else y[0].view(np.uint8) ^ np.uint8(128)
        return np.ascontiguousarray(y)

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 in [0, 1] -> the model's own input tensor (layout, dtype); resizes the model if needed."""
        x = x.transpose(0, 2, 3, 1) if self.nhwc else x
        dtype = self.input_dtype
        if dtype.kind in "iu":
            scale, zero_point = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale) + zero_point, info.min, info.max)
        x = np.ascontiguousarray(x, dtype=dtype)
        self._resize(x.shape)
        return x

    def _resize(self, shape: tuple[int, ...]) -> None:
        if self._shape != shape:
            self.interpreter.resize_tensor_input(self.input["index"], list(shape))
            self.interpreter.allocate_tensors()
            self._shape = shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run on a prepared input; the raw output tensor."""
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def to_float(self, y: np.ndarray) -> np.ndarray:
        """A raw output -> NCHW float32."""
        if y.dtype.kind in "iu":
            scale, zero_point = self.output["quantization"]
            y = (y.astype(np.float32) - zero_point) * np.float32(scale)
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2) if self.nhwc else y, dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 in [0, 1] -> NCHW float32."""
        return self.to_float(self.forward(self.prepare(x)))


class TfliteUpscaler(Upscaler):
    """A .tflite model run by LiteRT (XNNPACK on the CPU); NHWC, float or integer I/O (elsr.export.tflite).

    The input is converted once to the model's own tensor (NHWC; float32, or the uint8 pixels of a
    ``--uint8-io`` model), as a phone app hands it over.
    """

    def __init__(self, path: str | Path, scale: int | None = None, device: str = "auto", threads: int = 0) -> None:
        if device == "cuda":
            raise ElsrError("TFLite models run on the CPU here", path=path, fix="use --device cpu or auto")
        self.path = Path(path)
        self.name = self.path.name
        self.model = TfliteModel(self.path, threads or None)
        stored = positive_int(self.model.metadata.get("scale"))
        found = stored or probe_scale(self.run_array, self.path, REEXPORT)
        self.scale = check_scale(found, scale, self.path, "TFLite")

    def prepare(self, x: np.ndarray) -> np.ndarray:
        return self.model.prepare(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.model.forward(x)

    def fetch(self, y: np.ndarray) -> np.ndarray:
        return self.model.to_float(y)

    def upscale_frame(self, lr: np.ndarray) -> np.ndarray:
        """Pixel-I/O models take and give the bytes as they are (uint8, or int8 minus 128): no float step."""
        x = self.model.prepare_pixels(lr) if self.model.pixels_in else self.prepare(image_to_array(lr))
        y = self.forward(x)
        return self.model.to_pixels(y) if self.model.pixels_out else array_to_image(self.fetch(y))

    def info(self) -> ModelInfo:
        return typed_io_info(self.path, self.model.metadata, self.model.input_dtype)

    def close(self) -> None:
        del self.model
