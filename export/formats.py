"""The export formats ``elsr export --format`` offers: one row per format."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from elsr.errors import ElsrError

from .onnx_fp32 import export_onnx


@dataclass(frozen=True)
class ExportFormat:
    """One output format: ``export(model, out, opset=, meta=, overwrite=) -> Path`` writes it."""

    name: str
    suffix: str
    description: str
    export: Callable[..., Path]
    requires: str | None = None  # Python package the exporter needs beyond elsr's own dependencies

    def ensure_available(self) -> None:
        """Raise an ElsrError naming the missing package, if any."""
        if self.requires and importlib.util.find_spec(self.requires) is None:
            raise ElsrError(f"--format {self.name} needs the Python package {self.requires!r}",
                            fix=f"pip install {self.requires}")


FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat("onnx", ".onnx", "FP32 ONNX, one self-contained file", export_onnx, requires="onnxscript"),
}
