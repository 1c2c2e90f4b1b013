"""The I/O contract of every model file elsr writes, in one place: the exporters write it, the loaders read it.

- tensors: input ``lr`` and output ``sr``, RGB, NCHW float32 in [0, 1] for ONNX/ORT (TFLite and ExecuTorch:
  NHWC, float32 in [0, 1] or pixels, their own contracts);
- metadata (ONNX ``metadata_props``, a JSON entry ``elsr`` in a TFLite file, the JSON bytes an ExecuTorch
  program's constant method ``elsr_metadata`` returns, the ``user_defined_metadata`` of a Core ML model): the
  format tag, scale, layout, value range, precision, parameter count, validation PSNR, commit and command.
"""

from __future__ import annotations

from pathlib import Path

from elsr.model.network import ELSR, count_parameters
from elsr.provenance import provenance

INPUT_NAME, OUTPUT_NAME = "lr", "sr"
NCHW, NHWC = "NCHW", "NHWC"          # metadata 'layout': ONNX/ORT NCHW; TFLite and ExecuTorch NHWC
ONNX_FORMAT_TAG = "elsr-onnx"          # metadata 'format' of ONNX and ORT files
TFLITE_FORMAT_TAG = "elsr-tflite"      # metadata 'format' of TFLite files
TFLITE_METADATA_KEY = "elsr"           # the TFLite Model.metadata entry holding our JSON metadata
PTE_FORMAT_TAG = "elsr-executorch"     # metadata 'format' of ExecuTorch programs
PTE_METHOD = "forward"                 # the method of a .pte that upscales
PTE_METADATA_METHOD = "elsr_metadata"  # its constant method returning our metadata as UTF-8 JSON bytes (uint8)
COREML_FORMAT_TAG = "elsr-coreml"      # metadata 'format' of Core ML models
PRECISIONS = ("fp32", "fp16", "int8")
COPIES_KEY = "int8_copies"             # metadata of INT8 files: 2 when the skip path is split (elsr.quant.fake_quant)


def model_metadata(model: ELSR, precision: str = "fp32", meta: dict | None = None) -> dict[str, str]:
    """The metadata every elsr ONNX model carries (all values are strings); ``meta`` is the checkpoint's
    (for psnr_y and the images it was measured on)."""
    meta = meta or {}
    fields: dict[str, object] = {
        "format": ONNX_FORMAT_TAG, "scale": model.scale, "value_range": "0..1", "channel_order": "RGB",
        "layout": NCHW, "input": INPUT_NAME, "output": OUTPUT_NAME, "precision": precision,
        "parameters": count_parameters(model)}
    for key in ("psnr_y", "psnr_rgb"):
        value = (meta.get("val") or {}).get(key)
        if value is not None:
            fields[key] = f"{value:.4f}"
    if meta.get("val_data"):
        fields["psnr_data"] = meta["val_data"]
    fields.update(provenance())
    return {key: str(value) for key, value in fields.items()}


def artifact_name(scale: int, int8: bool, suffix: str, tag: str = "", fp16: bool = False) -> Path:
    """The default file name of an exported model: elsr_x4.onnx, elsr_x4_int8.onnx, elsr_x4_int8_int8io.tflite,
    elsr_x4_fp16.mlpackage."""
    return Path(f"elsr_x{scale}{'_int8' if int8 else '_fp16' if fp16 else ''}{tag}{suffix}")


def positive_int(value: str | None) -> int | None:
    """A metadata value that must be a positive integer (scale, parameters), or None when absent or not one."""
    return int(value) if value is not None and value.isdigit() and int(value) > 0 else None
