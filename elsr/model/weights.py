"""Weights must be finite numbers: the one check every model loader runs on what it reads (a checkpoint's
tensors, an ONNX file's initializers, an ORT-format or TFLite file's buffers and quantization scales).

A NaN or an infinity in a weight reaches every output pixel it touches: the model would write an image of
garbage (and numpy would warn about the cast to uint8). A damaged or diverged model is refused at load instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from elsr.errors import ElsrError

NOT_FINITE_FIX = "the file is damaged or its training diverged: use an earlier checkpoint, or re-train or re-export it"

Array = np.ndarray | torch.Tensor


def non_finite(values: Array) -> str | None:
    """What is not finite in ``values`` ("NaN", "infinite values", "NaN and infinite values"), or None."""
    if isinstance(values, torch.Tensor):
        if not values.is_floating_point() or bool(torch.isfinite(values).all()):
            return None
        nan, inf = bool(torch.isnan(values).any()), bool(torch.isinf(values).any())
    else:
        values = np.asarray(values)
        if values.dtype.kind != "f" or bool(np.isfinite(values).all()):
            return None
        nan, inf = bool(np.isnan(values).any()), bool(np.isinf(values).any())
    return " and ".join(word for word, found in (("NaN", nan), ("infinite values", inf)) if found)


def refuse_non_real(named: Iterable[tuple[str, torch.Tensor]], path: str | Path) -> None:
    """An ElsrError naming the file and the first tensor that is not of a real floating-point type: integer
    weights would be cast without a word (a model of garbage), complex ones lose half their values."""
    for name, values in named:
        if not values.is_floating_point():
            raise ElsrError(f"weights are not real floating-point numbers: tensor {name!r} holds {values.dtype} "
                            "values", path=path, fix="pass a checkpoint written by 'elsr train'")


def refuse_non_finite(named: Iterable[tuple[str, Array]], path: str | Path) -> None:
    """An ElsrError naming the file and the first tensor that holds a NaN or an infinity."""
    for name, values in named:
        found = non_finite(values)
        if found:
            raise ElsrError(f"weights are not finite: tensor {name!r} holds {found}", path=path, fix=NOT_FINITE_FIX)
