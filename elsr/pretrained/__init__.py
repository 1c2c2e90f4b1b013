"""Models that ship inside the package (see MODEL_CARD.md beside this file)."""

from __future__ import annotations

from pathlib import Path

from elsr.errors import ElsrError
from elsr.model.network import PAPER_CHANNELS

FOLDER = Path(__file__).parent
MODELS = {
    "x2": FOLDER / "elsr_x2.pt",             # FP32 checkpoint, x2 (the x2 schedule)
    "x4": FOLDER / "elsr_x4.pt",             # FP32 checkpoint
    "x4-onnx": FOLDER / "elsr_x4.onnx",      # FP32 ONNX
    "x4-int8": FOLDER / "elsr_x4_int8.onnx",  # INT8 QDQ ONNX (QAT), the default for upscaling
    "x4-int8-ort": FOLDER / "elsr_x4_int8.ort",  # the same in ONNX Runtime's ORT format (mobile)
    "x4-int8-tflite": FOLDER / "elsr_x4_int8_int8io.tflite",  # the same in LiteRT, int8 pixels (NPU-ready)
}
# The size ladder (elsr ladder, MODEL_CARD.md): the same x4 network with more hidden channels, each trained with
# the quick schedule and quantized by the same QAT; the paper's 6 channels are x4 / x4-int8, a size of N
# channels is x4-cN (FP32 checkpoint) and x4-cN-int8 (INT8 QDQ ONNX)
LADDER_CHANNELS = (16, 32)
MODELS.update({name: FOLDER / f"elsr_{name.replace('-', '_')}{suffix}" for channels in LADDER_CHANNELS
               for name, suffix in ((f"x4-c{channels}", ".pt"), (f"x4-c{channels}-int8", ".onnx"))})
DEFAULT = "x4-int8"
# Models for videos, fastest first: `elsr upscale` on a video takes the first that is bundled and whose runtime
# is installed (elsr.runtime.loaders.fastest_bundled). The INT8 TFLite model (x4-int8-tflite, the tflite extra)
# takes the frames' bytes with no float conversion and runs several times faster than the INT8 ONNX graph
# (BENCHMARKS.md); without LiteRT: the ORT file, then the ONNX one (the same INT8 graph).
VIDEO_MODELS = ("x4-int8-tflite", "x4-int8-ort", "x4-int8")


def pretrained(name: str = DEFAULT) -> Path:
    """Path of a bundled model: x2 / x4 (FP32 checkpoints), x4-onnx (FP32 ONNX), x4-int8 (INT8 ONNX),
    x4-int8-ort (INT8, ORT format), x4-int8-tflite (INT8 LiteRT, int8 pixels in and out), or a wider size of the
    ladder: x4-cN (FP32 checkpoint) and x4-cN-int8 (INT8 ONNX), N hidden channels."""
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


def size_names(channels: int) -> tuple[str, str]:
    """The bundled (FP32, INT8) names of the x4 model with ``channels`` hidden channels: x4 / x4-int8 for the
    paper's 6, x4-cN / x4-cN-int8 for the ladder's sizes."""
    if channels == PAPER_CHANNELS:
        return "x4", "x4-int8"
    if channels not in LADDER_CHANNELS:
        raise ElsrError(f"no bundled x4 model with {channels} hidden channels",
                        fix=f"bundled sizes: {', '.join(map(str, bundled_sizes()))}")
    return f"x4-c{channels}", f"x4-c{channels}-int8"


def bundled_sizes() -> tuple[int, ...]:
    """Hidden channels of every bundled x4 size, the paper's first."""
    return (PAPER_CHANNELS, *LADDER_CHANNELS)
