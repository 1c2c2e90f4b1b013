"""Models that ship inside the package (see MODEL_CARD.md beside this file)."""

from __future__ import annotations

from pathlib import Path

from elsr.errors import ElsrError

FOLDER = Path(__file__).parent
MODELS = {
    "x2": FOLDER / "elsr_x2.pt",             # FP32 checkpoint, x2 (the x2 schedule)
    "x4": FOLDER / "elsr_x4.pt",             # FP32 checkpoint
    "x4-onnx": FOLDER / "elsr_x4.onnx",      # FP32 ONNX
    "x4-int8": FOLDER / "elsr_x4_int8.onnx",  # INT8 QDQ ONNX (QAT), the default for upscaling
    "x4-int8-ort": FOLDER / "elsr_x4_int8.ort",  # the same in ONNX Runtime's ORT format (mobile)
    "x4-int8-tflite": FOLDER / "elsr_x4_int8_int8io.tflite",  # the same in LiteRT, int8 pixels (NPU-ready)
}
DEFAULT = "x4-int8"
# Models for videos, fastest first: `elsr upscale` on a video takes the first that is bundled and whose runtime
# is installed (elsr.runtime.loaders.fastest_bundled). The INT8 TFLite model (x4-int8-tflite, the tflite extra)
# takes the frames' bytes with no float conversion and runs several times faster than the INT8 ONNX graph
# (BENCHMARKS.md); without LiteRT: the ORT file, then the ONNX one (the same INT8 graph).
VIDEO_MODELS = ("x4-int8-tflite", "x4-int8-ort", "x4-int8")


def pretrained(name: str = DEFAULT) -> Path:
    """Path of a bundled model: x2 / x4 (FP32 checkpoints), x4-onnx (FP32 ONNX), x4-int8 (INT8 ONNX),
    x4-int8-ort (INT8, ORT format) or x4-int8-tflite (INT8 LiteRT, int8 pixels in and out)."""
    if name not in MODELS:
        raise ElsrError(f"no bundled model {name!r}", fix=f"use one of {', '.join(MODELS)}")
    return MODELS[name]


def bundled_name(path: Path) -> str | None:
    """The bundled model's name of ``path``, or None when it is not one of them."""
    return next((name for name, bundled in MODELS.items() if Path(path).resolve() == bundled.resolve()), None)


def model_path(value: str) -> Path:
    """A --model / --weights value: an existing file, else the name of a bundled model (``x2``, ``x4-int8``, ...)."""
    path = Path(value)
    if path.exists() or value not in MODELS:
        return path
    return MODELS[value]
