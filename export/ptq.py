"""The PTQ baseline every QAT report compares against: onnxruntime's own static quantization (QDQ,
per-channel int8 weights, uint8 activations, min/max calibration on real LR patches)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from elsr.export.onnx_int8 import save_model
from elsr.runtime.contract import INPUT_NAME

PTQ_QUANTIZATION = ("ptq; onnxruntime quantize_static qdq; per-channel int8 weights, uint8 activations, "
                    "min/max calibration")  # metadata 'quantization'


class PatchCalibrationReader(CalibrationDataReader):
    """onnxruntime CalibrationDataReader over real LR patches of the training data."""

    def __init__(self, patches: list[np.ndarray]) -> None:
        self._items = iter(patches)

    def get_next(self) -> dict | None:
        item = next(self._items, None)
        return None if item is None else {INPUT_NAME: item}


def quantize_ptq(fp32_onnx: Path, out: Path, patches: list[np.ndarray]) -> Path:
    """onnxruntime static quantization (QDQ, per-channel int8 weights, uint8 activations, min/max)."""
    reader = PatchCalibrationReader(patches)
    prepared = fp32_onnx.with_name(f"{fp32_onnx.stem}_prep.onnx")
    quant_pre_process(str(fp32_onnx), str(prepared))  # shape inference and graph clean-up, as recommended
    quantized = fp32_onnx.with_name(f"{fp32_onnx.stem}_ptq.onnx")
    quantize_static(str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    model = onnx.load(str(quantized))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(precision="int8", quantization=PTQ_QUANTIZATION)
    onnx.helper.set_model_props(model, props)
    return save_model(model, out)
