"""Tiny models and images for the benchmark tests: a checkpoint, its FP32 and INT8 ONNX, broken files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from elsr.checkpoint import save_checkpoint
from elsr.model import ModelConfig
from elsr.quantization import QuantELSR, quant_params
from export.onnx_fp32 import export_onnx, onnx_metadata
from export.onnx_int8 import build_int8_model, save_model
from tests.helpers import image_folder, nearest_neighbour_elsr, smooth_image, write_png


@dataclass
class Models:
    weights: Path
    fp32: Path
    int8: Path
    ptq_like: Path     # quantized graph whose metadata still says fp32
    broken: Path       # garbage bytes
    missing: Path
    hr: Path           # HR image folder
    frames: Path       # 5 frames of 32x24


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Models:
    root = tmp_path_factory.mktemp("bench-models")
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = nearest_neighbour_elsr(ModelConfig().scale)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_checkpoint(root / "model.pt", model)
    export_onnx(model, root / "elsr_x4.onnx")
    qmodel = QuantELSR(model).train()
    with torch.no_grad():
        for _ in range(3):
            qmodel(torch.rand(2, 3, 16, 16))
    qmodel.freeze_observers()
    qmodel.eval()
    int8 = build_int8_model(quant_params(qmodel), {**onnx_metadata(model, "int8"), "quantization": "qat; qdq"})
    save_model(int8, root / "elsr_x4_int8.onnx")
    for prop in int8.metadata_props:
        if prop.key == "precision":
            prop.value = "fp32"
    onnx.save_model(int8, str(root / "ptq_like.onnx"))
    (root / "broken.onnx").write_bytes(b"this is not a protobuf" * 10)
    for i in range(5):
        write_png(root / "frames" / f"{i:08d}.png", smooth_image(rng, 24, 32))
    return Models(root / "model.pt", root / "elsr_x4.onnx", root / "elsr_x4_int8.onnx", root / "ptq_like.onnx",
                  root / "broken.onnx", root / "missing.onnx", image_folder(root / "hr", rng, 2, (48, 64)),
                  root / "frames")
