"""The mobile artifacts the ARM64 check runs: one table, each row exported at run time from the bundled models.

A row names the file, the ``elsr export`` format and options that write it, its precision and the
runtimes (``targets.RUNTIMES``) that run it inside the arm64 root. A new artifact is one row here (a
new runtime also needs a row in ``targets.RUNTIMES`` and a loader in ``runner.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from elsr.errors import ElsrError
from elsr.export.exporter import ExportConfig, export_model
from elsr.pretrained import MODELS

log = logging.getLogger(__name__)

FP32_WEIGHTS = "x4"          # elsr.pretrained.MODELS: the FP32 checkpoint
INT8_SOURCE = "x4-int8"      # the INT8 ONNX model whose QAT weights and ranges every INT8 export takes
ONNX = ("onnxruntime",)
LITERT = ("litert-xnnpack", "litert-builtin")


@dataclass(frozen=True)
class Artifact:
    file: str                              # the file name (the JSON records' "artifact")
    format: str                            # elsr.export.formats.FORMATS key
    precision: str                         # fp32 / int8
    runtimes: tuple[str, ...]              # targets.RUNTIMES names that run it in the arm64 root
    options: dict[str, Any] = field(default_factory=dict)   # further ExportConfig fields (io="uint8", ...)


ARTIFACTS: tuple[Artifact, ...] = (
    Artifact("elsr_x4.onnx", "onnx", "fp32", ONNX),
    Artifact("elsr_x4_int8.onnx", "onnx", "int8", ONNX),
    Artifact("elsr_x4_int8.ort", "ort", "int8", ONNX),
    Artifact("elsr_x4.tflite", "tflite", "fp32", LITERT),
    Artifact("elsr_x4_int8.tflite", "tflite", "int8", LITERT),
    Artifact("elsr_x4_int8_uint8io.tflite", "tflite", "int8", LITERT, {"io": "uint8"}),
    Artifact("elsr_x4_int8_int8io.tflite", "tflite", "int8", LITERT, {"io": "int8"}),
)


def artifacts_named(names: list[str] | None) -> tuple[Artifact, ...]:
    """The rows whose file names are given (all rows for None); ElsrError naming the known ones."""
    if not names:
        return ARTIFACTS
    known = {a.file: a for a in ARTIFACTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ElsrError(f"no artifact {unknown[0]!r} in the table", fix=f"use some of {', '.join(known)}")
    return tuple(known[n] for n in names)


def export_config(artifact: Artifact, folder: Path) -> ExportConfig:
    int8 = artifact.precision == "int8"
    return ExportConfig(weights=MODELS[FP32_WEIGHTS], format=artifact.format, out=folder / artifact.file, int8=int8,
                        qat_checkpoint=MODELS[INT8_SOURCE] if int8 else None, overwrite=True, **artifact.options)


def export_artifacts(artifacts: tuple[Artifact, ...], folder: Path,
                     emit: Callable[[str], None] = log.debug) -> dict[str, Path]:
    """Write every artifact into ``folder`` with the export library (each checked in its own runtime)."""
    return {a.file: export_model(export_config(a, folder), emit=emit) for a in artifacts}
