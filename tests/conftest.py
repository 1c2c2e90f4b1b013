"""Shared fixtures: where the real test images live, small generated images, and tiny models in every format."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from elsr.export.onnx_fp32 import export_onnx
from elsr.export.onnx_int8 import build_int8_model, save_model
from elsr.model.checkpoint import save_checkpoint
from elsr.model.network import ModelConfig
from elsr.quant.fake_quant import QuantELSR
from elsr.quant.params import quant_params
from elsr.runtime.contract import model_metadata
from tests.helpers import image_folder, nearest_neighbour_elsr, smooth_image, write_png

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The shared data folder: $ELSR_DATA, else ../shared/data beside the repository."""
    return Path(os.environ.get("ELSR_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real-image data set; skips the test with a reason when it is absent."""
    path = shared_data_dir()
    if not (path / "Set5" / "HR").is_dir():
        pytest.skip(f"real test images not found at {path} (set ELSR_DATA to the shared data folder)")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


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
    int8 = build_int8_model(quant_params(qmodel), {**model_metadata(model, "int8"), "quantization": "qat; qdq"})
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
