"""One loader per model-file suffix: the table every command, export check and benchmark row loads through.

A new runtime is one row here; the export format table and the benchmark backends take their suffix
lists from it. Its loader reads an untrusted file: it refuses, in one line naming the file, what is not its
kind (elsr.io.kinds), what it cannot parse, what is not an image model, and weights that are not finite
(elsr.model.weights.refuse_non_finite) before its runtime runs anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from elsr.errors import ElsrError
from elsr.io.kinds import describe, refuse_wrong_kind
from elsr.pretrained import DEFAULT, MODELS, model_path
from elsr.runtime.base import Upscaler
from elsr.runtime.coreml_model import COREML_SUFFIXES, CoremlUpscaler, coreml_runs_here
from elsr.runtime.onnx_model import ONNX_SUFFIXES, OnnxUpscaler
from elsr.runtime.pte_model import PTE_SUFFIXES, PteUpscaler, executorch_available
from elsr.runtime.pytorch_model import CHECKPOINT_SUFFIXES, TorchUpscaler
from elsr.runtime.tflite_model import TFLITE_SUFFIXES, TfliteUpscaler, litert_available


@dataclass(frozen=True)
class Runtime:
    """What runs a kind of model file: its name (the benchmark backends' kind), the file kinds it reads (by
    content, elsr.io.kinds), their usual suffixes, its loader, and whether it is installed."""

    name: str
    kinds: tuple[str, ...]
    suffixes: tuple[str, ...]
    load: Callable[..., Upscaler]   # (path, scale, device, threads) -> Upscaler
    available: Callable[[], bool] = lambda: True


RUNTIMES: tuple[Runtime, ...] = (
    Runtime("torch", ("checkpoint", "pickle"), CHECKPOINT_SUFFIXES, TorchUpscaler),
    Runtime("onnxruntime", ("onnx", "ort"), ONNX_SUFFIXES, OnnxUpscaler),
    Runtime("tflite", ("tflite",), TFLITE_SUFFIXES, TfliteUpscaler, litert_available),
    Runtime("executorch", ("pte",), PTE_SUFFIXES, PteUpscaler, executorch_available),
    Runtime("coreml", ("mlpackage",), COREML_SUFFIXES, CoremlUpscaler, coreml_runs_here),  # Apple platforms only
)
MODEL_SUFFIXES = tuple(s for runtime in RUNTIMES for s in runtime.suffixes)
MODEL_KINDS = tuple(k for runtime in RUNTIMES for k in runtime.kinds if k != "pickle")


def runtime_named(name: str) -> Runtime:
    return next(r for r in RUNTIMES if r.name == name)


def runtime_for(path: Path, option: str | None = None) -> Runtime:
    """The runtime of a model file, by its content (a file of no known kind: by its suffix, so that its own
    runtime says what is wrong with it); one line naming the kinds we run otherwise."""
    fix = f"pass a model file ({', '.join(MODEL_SUFFIXES)}) or a bundled model's name: {', '.join(MODELS)}"
    kind = refuse_wrong_kind(path, MODEL_KINDS, option, fix=fix) if path.exists() else "missing"
    for runtime in RUNTIMES:  # a missing, damaged or unknown file goes by its suffix: its runtime says what is wrong
        if kind in runtime.kinds or (kind in ("unknown", "zip", "missing") and path.suffix.lower() in runtime.suffixes):
            return runtime
    if kind == "missing":
        raise ElsrError("no such model file", path=path, fix=fix)
    raise ElsrError(f"not a model file elsr knows ({describe(kind)}, {path.suffix or 'no suffix'})", path=path,
                    fix=f"use one of {', '.join(MODEL_SUFFIXES)}, or a bundled model's name: {', '.join(MODELS)}")


def load_upscaler(path: str | Path = DEFAULT, scale: int | None = None, device: str = "auto",
                  threads: int = 0) -> Upscaler:
    """Load a checkpoint, an ONNX or ORT-format model, a TFLite model or an ExecuTorch program, recognised by
    content; ``scale``, when given, must match it. A bundled model's name (``x4-int8``, ...) is taken too; by default the bundled model
    `elsr upscale` uses for images (``x4-int8``).

    ``threads`` is the runtime's intra-op thread count (0: its default); a PyTorch model applies it only
    while ``active()``.
    """
    path = model_path(str(path))
    return runtime_for(path).load(path, scale, device, threads)


def fastest_bundled(names: tuple[str, ...]) -> Path:
    """The first of ``names`` (bundled models' names, fastest first) that is bundled and whose runtime is
    installed; names not bundled (yet) are passed over."""
    for name in names:
        path = MODELS.get(name)
        if path is not None and path.is_file() and runtime_for(path).available():
            return path
    raise ElsrError(f"none of the bundled models {', '.join(names)} can run here",
                    fix="reinstall elsr, or pass --model")
