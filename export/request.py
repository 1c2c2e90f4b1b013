"""What an export is asked to write (the FP32 model, the QAT model for INT8, the I/O options) and what it wrote."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from elsr.model.network import ELSR
from elsr.quant.fake_quant import QuantELSR
from elsr.quant.params import QuantParams, quant_params


@dataclass
class ExportRequest:
    """What to export: the FP32 model, and the QAT model when INT8 is asked."""

    model: ELSR
    meta: dict = field(default_factory=dict)  # the checkpoint's meta (its validation PSNR, the images it was on)
    qmodel: QuantELSR | None = None           # INT8 from these QAT weights and ranges (the fake-quant reference)
    params: QuantParams | None = None         # its integer parameters when they come from a file (else from qmodel)
    fixed_shape: tuple[int, int, int, int] | None = None   # NCHW; None: dynamic batch, height, width
    io: str = "float"                         # TFLite/ExecuTorch: the tensors at the ends (the format's io_modes)
    opset: int | None = None                  # FP32 ONNX/ORT only
    check_images: list[Path] = field(default_factory=list)
    int8_meta: dict = field(default_factory=dict)   # the QAT model's own validation PSNR ({} when unknown)
    fp16: bool = False                        # Core ML: compute in float16

    @property
    def int8(self) -> bool:
        return self.qmodel is not None

    @property
    def pixel_io(self) -> bool:
        """The graph takes and gives pixels (uint8, or int8 minus 128), not float32 in [0, 1]."""
        return self.io != "float"

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.fp16 else "fp32"

    @property
    def artifact_meta(self) -> dict:
        """The meta whose validation PSNR the artifact's metadata records: its own, never another model's."""
        return self.int8_meta if self.int8 else self.meta

    @property
    def quant_params(self) -> QuantParams:
        return self.params if self.params is not None else quant_params(self.qmodel)


@dataclass
class Exported:
    files: list[Path]                         # the artifact first, then what goes with it
    lines: list[str] = field(default_factory=list)   # what was checked, for the console
