"""The table of backends: every row of the benchmark comes from one entry here.

Adding a backend is one ``Backend(...)`` entry: its name, the runtime that loads its files (whose
suffixes it takes), how to build the loaded model for a file and a thread count, and why it cannot
run here (if it cannot).
"""

from __future__ import annotations

import fnmatch
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from elsr.benchmarks.timing import cuda_ms, wall_ms
from elsr.errors import ElsrError
from elsr.runtime.base import Upscaler
from elsr.runtime.loaders import runtime_named
from elsr.runtime.coreml_model import EXTRA_HINT as COREML_HINT
from elsr.runtime.coreml_model import NOT_HERE, CoremlUpscaler, coreml_runs_here, coremltools_available
from elsr.runtime.onnx_model import CUDA_PROVIDER, OnnxUpscaler
from elsr.runtime.pte_model import EXTRA_HINT as EXECUTORCH_HINT
from elsr.runtime.pte_model import PteUpscaler, executorch_available
from elsr.runtime.pytorch_model import TorchUpscaler
from elsr.runtime.tflite_model import TfliteUpscaler, litert_available


def no_cuda() -> str | None:
    import torch

    return None if torch.cuda.is_available() else "no CUDA GPU"


def no_compile() -> str | None:
    """Why torch.compile (inductor) cannot work here, or None."""
    import torch

    try:
        import torch._dynamo

        if not torch._dynamo.is_dynamo_supported():
            return "torch.compile is not supported on this Python"
    except Exception as exc:  # noqa: BLE001 - any import problem means 'not here'
        return f"torch.compile unavailable: {exc}"
    compiler = os.environ.get("CXX", "g++")
    if not (shutil.which(compiler) or shutil.which("clang++")):
        return f"torch.compile needs a C++ compiler ({compiler} not found)"
    return None


def no_ort_cuda() -> str | None:
    import onnxruntime as ort

    return None if CUDA_PROVIDER in ort.get_available_providers() else \
        "onnxruntime has no CUDA provider here (install onnxruntime-gpu)"


def no_tflite() -> str | None:
    return None if litert_available() else "no TFLite interpreter (pip install 'elsr[tflite]')"


def no_executorch() -> str | None:
    return None if executorch_available() else f"no ExecuTorch runtime ({EXECUTORCH_HINT})"


def no_coreml() -> str | None:
    if coreml_runs_here():
        return None
    return f"{NOT_HERE} (macOS, iOS)" if coremltools_available() or platform.system() != "Darwin" else \
        f"no coremltools ({COREML_HINT})"


@dataclass(frozen=True)
class Backend:
    """One way to run a model: ``build(path, threads)`` loads it; ``unavailable()`` gives a reason or None."""

    name: str
    kind: str                                     # the runtime (elsr.runtime.loaders) whose files it takes
    build: Callable[[Path, int | None], Upscaler]
    unavailable: Callable[[], str | None] = lambda: None
    threaded: bool = True                         # one row per --threads value (CPU); else one row (GPU)
    default: bool = True                          # part of the default selection
    timer: Callable[[Callable[[], Any]], float] = wall_ms   # how one run is timed
    description: str = ""
    own_process: bool = False                     # each row in a fresh process (a runtime whose thread count is
                                                  # fixed once a model is loaded)

    @property
    def suffixes(self) -> tuple[str, ...]:
        return runtime_named(self.kind).suffixes


def loader(cls: type[Upscaler], device: str = "cpu", **options) -> Callable[[Path, int | None], Upscaler]:
    """build(path, threads) of a backend: ``cls`` on ``device`` with ``options``."""
    return lambda path, threads: cls(path, None, device, threads or 0, **options)


BACKENDS: tuple[Backend, ...] = (
    Backend("torch-cpu", "torch", loader(TorchUpscaler), description="PyTorch eager, CPU, NCHW"),
    Backend("torch-cpu-cl", "torch", loader(TorchUpscaler, channels_last=True),
            description="PyTorch eager, CPU, channels_last"),
    Backend("torch-compile", "torch", loader(TorchUpscaler, compiled=True), no_compile, default=False,
            description="torch.compile (inductor), CPU; slow to compile (twice a row: loaded alone, then for the "
                        "turns), off by default"),
    Backend("torch-cuda-fp32", "torch", loader(TorchUpscaler, "cuda"), no_cuda, threaded=False, timer=cuda_ms,
            description="PyTorch eager, CUDA, FP32, CUDA-event timing"),
    Backend("torch-cuda-fp16", "torch", loader(TorchUpscaler, "cuda", half=True), no_cuda, threaded=False,
            timer=cuda_ms, description="PyTorch eager, CUDA, FP16, CUDA-event timing"),
    Backend("ort-cpu", "onnxruntime", loader(OnnxUpscaler),
            description="onnxruntime CPU: FP32/INT8 ONNX and ORT-format models"),
    Backend("ort-cuda", "onnxruntime", loader(OnnxUpscaler, "cuda"), no_ort_cuda, threaded=False,
            description="onnxruntime CUDA execution provider"),
    Backend("tflite", "tflite", loader(TfliteUpscaler), no_tflite,
            description="LiteRT (TFLite) interpreter, CPU, XNNPACK: FP32/INT8 .tflite, float or uint8 I/O"),
    Backend("executorch", "executorch", loader(PteUpscaler), no_executorch, own_process=True,
            description="ExecuTorch runtime, CPU, XNNPACK delegate: FP32/INT8 .pte, float or int8 I/O; each thread "
                        "count in its own process (its thread pool cannot be resized once a program is loaded)"),
    Backend("coreml", "coreml", loader(CoremlUpscaler), no_coreml, threaded=False,
            description="Core ML through coremltools (macOS only): .mlpackage, RGB images in and out"),
)


def select_backends(patterns: list[str], table: tuple[Backend, ...] = BACKENDS) -> list[Backend]:
    """Backends matching any of ``patterns`` (names or globs; 'default', 'all'), in table order."""
    chosen = set()
    for pattern in patterns:
        if pattern == "default":
            matched = {b.name for b in table if b.default}
        elif pattern == "all":
            matched = {b.name for b in table}
        else:
            matched = {b.name for b in table if fnmatch.fnmatchcase(b.name, pattern)}
        if not matched:
            raise ElsrError(f"--backends {pattern!r} matches no backend",
                            fix=f"use names or globs of: {', '.join(b.name for b in table)}, or default, all")
        chosen |= matched
    return [b for b in table if b.name in chosen]


@dataclass(frozen=True)
class RowPlan:
    """One row to measure: a backend, a model file, a thread count; or a row that is settled already."""

    backend: Backend | None
    model: Path | None          # None: a backend that is unavailable here, for all its files
    threads: int | None = None
    status: str | None = None   # 'skipped: ...' / 'failed: ...' when the row cannot run

    @property
    def name(self) -> str:
        backend = self.backend.name if self.backend else "?"
        return f"{backend}:{self.model.name}" if self.model else backend


def plan_rows(files: list[Path], patterns: list[str], threads: list[int],
              table: tuple[Backend, ...] = BACKENDS) -> list[RowPlan]:
    """Every (backend, file, thread count) row, in table order. An unavailable backend gives one 'skipped' row,
    a missing file one 'failed' row per backend, a file no backend of the table takes one 'failed' row."""
    plans = []
    for backend in select_backends(patterns, table):
        taken = [p for p in files if p.suffix.lower() in backend.suffixes]
        reason = backend.unavailable() if taken else None
        if reason:
            plans.append(RowPlan(backend, None, status=f"skipped: {reason}"))
            continue
        for path in taken:
            if not path.exists():
                plans.append(RowPlan(backend, path, status="failed: no such file"))
            else:
                plans += [RowPlan(backend, path, t) for t in (threads if backend.threaded else [None])]
    known = {s for b in table for s in b.suffixes}
    for path in files:
        if path.suffix.lower() not in known:
            plans.append(RowPlan(None, path, status=f"failed: no backend runs {path.suffix or 'suffix-less'} files "
                                                    f"(use {', '.join(sorted(known))})"))
    return plans
