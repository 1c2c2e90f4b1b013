"""The I/O contract of every model file elsr writes, in one place: the exporters write it, the loaders read it.

- tensors: input ``lr`` and output ``sr``, RGB, NCHW float32 in [0, 1] for ONNX/ORT (TFLite: NHWC,
  float32 in [0, 1] or uint8 pixels, its own ``io_contract``);
- metadata (ONNX ``metadata_props``, a JSON entry ``elsr`` in a TFLite file): the format tag, scale,
  layout, value range, precision, parameter count, validation PSNR, commit and command.
"""

from __future__ import annotations

from pathlib import Path

from elsr.model.network import ELSR, count_parameters
from elsr.provenance import provenance

INPUT_NAME, OUTPUT_NAME = "lr", "sr"
ONNX_FORMAT_TAG = "elsr-onnx"          # metadata 'format' of ONNX and ORT files
TFLITE_FORMAT_TAG = "elsr-tflite"      # metadata 'format' of TFLite files
TFLITE_METADATA_KEY = "elsr"           # the TFLite Model.metadata entry holding our JSON metadata
PRECISIONS = ("fp32", "fp16", "int8")
COPIES_KEY = "int8_copies"             # metadata of INT8 files: 2 when the skip path is split (elsr.quant.fake_quant)


def model_metadata(model: ELSR, precision: str = "fp32", meta: dict | None = None) -> dict[str, str]:
    """The metadata every elsr ONNX model carries (all values are strings); ``meta`` is the checkpoint's
    (for psnr_y and the images it was measured on)."""
    meta = meta or {}
    fields: dict[str, object] = {
        "format": ONNX_FORMAT_TAG, "scale": model.scale, "value_range": "0..1", "channel_order": "RGB",
        "layout": "NCHW", "input": INPUT_NAME, "output": OUTPUT_NAME, "precision": precision,
        "parameters": count_parameters(model)}
    for key in ("psnr_y", "psnr_rgb"):
        value = (meta.get("val") or {}).get(key)
        if value is not None:
            fields[key] = f"{value:.4f}"
    if meta.get("val_data"):
        fields["psnr_data"] = meta["val_data"]
    fields.update(provenance())
    return {key: str(value) for key, value in fields.items()}


def artifact_name(scale: int, int8: bool, suffix: str, tag: str = "") -> Path:
    """The default file name of an exported model: elsr_x4.onnx, elsr_x4_int8.onnx, elsr_x4_int8_int8io.tflite."""
    return Path(f"elsr_x{scale}{'_int8' if int8 else ''}{tag}{suffix}")


def positive_int(value: str | None) -> int | None:
    """A metadata value that must be a positive integer (scale, parameters), or None when absent or not one."""
    return int(value) if value is not None and value.isdigit() and int(value) > 0 else None
