"""Checkpoints: written atomically, read with ``weights_only=True``, self-describing.

A checkpoint is never unpickled with arbitrary code: ``torch.load(weights_only=True)`` only
rebuilds tensors and plain containers, so a file that would run code when loaded (a malicious
pickle) is refused with one line naming it, and nothing in it is executed.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from elsr.errors import ElsrError
from elsr.io.files import atomic_path
from elsr.io.kinds import refuse_wrong_kind
from elsr.model.network import ELSR, ModelConfig, load_weights
from elsr.model.weights import refuse_non_finite, refuse_non_real
from elsr.pretrained import model_path

FORMAT = "elsr-checkpoint"
VERSION = 1
CHECKPOINT_FIX = "pass a model.pt written by 'elsr train', or x2 / x4 for a bundled one"


def save_checkpoint(path: str | Path, model: ELSR, meta: dict | None = None, **extra: Any) -> None:
    """Save weights, architecture and metadata (plus any training state in ``extra``) atomically."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": model.config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta or {},
        **extra,
    }
    # Into a Python file object, not a path: a full disk then raises OSError (ENOSPC), which atomic_path
    # reports in one line, instead of torch's opaque "PytorchStreamWriter failed" RuntimeError.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        try:
            torch.save(payload, handle)
        except RuntimeError as exc:  # torch's zip writer fails again while closing; the OSError is the reason
            reason = _os_error_in(exc)
            if reason is None:
                raise
            raise reason from exc


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError an exception was raised while handling (or because of), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _refused_global(exc: Exception) -> str | None:
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return found.group(1) if found else None


def load_safely(path: str | Path):
    """``torch.load`` with ``weights_only=True`` (no code execution), with one-line errors."""
    path = Path(path)
    if not path.is_file() and not path.is_dir():
        raise ElsrError("no such checkpoint file", path=path, fix="check the path")
    refuse_wrong_kind(path, ("checkpoint",), fix=CHECKPOINT_FIX)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise ElsrError("not a readable PyTorch checkpoint (corrupt or truncated)", path=path,
                            fix="re-download or re-create it") from exc
        found = _refused_global(exc)
        what = f" ({found})" if found else ""
        raise ElsrError(
            f"refused to load: the file holds Python objects other than tensors{what}, which could run code",
            path=path, fix="only use checkpoints saved by elsr or plain state dicts") from exc
    except Exception as exc:  # noqa: BLE001 - anything else torch.load meets in a bad file (EOFError, KeyError, ...)
        raise ElsrError("not a readable PyTorch checkpoint (corrupt or truncated)", path=path,
                        fix="re-download or re-create it") from exc


def _tensors(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file safely and check it is one of ours (weights, all finite, and a known architecture).

    A bare ELSR state dict is accepted too; its architecture is inferred from the shapes.
    """
    data = load_safely(path)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        if not _tensors(data.get("model")) or not isinstance(data.get("arch"), dict):
            raise ElsrError("ELSR checkpoint without weights or architecture (damaged)", path=path,
                            fix="re-create it with 'elsr train'")
        arch_config(data, path)
    elif _tensors(data):
        data = {"format": FORMAT, "version": VERSION, "arch": infer_arch(data, path), "model": data, "meta": {}}
    else:
        raise ElsrError("not an ELSR checkpoint", path=path, fix="pass a model.pt written by 'elsr train'")
    training = data.get("train_model") if _tensors(data.get("train_model")) else {}   # a run state's own weights
    refuse_non_real([*data["model"].items(), *training.items()], path)
    refuse_non_finite([*data["model"].items(), *training.items()], path)
    return data


def arch_config(ckpt: dict, path: str | Path) -> ModelConfig:
    """The ModelConfig a checkpoint records; an architecture elsr cannot build is an error naming the file."""
    try:
        return ModelConfig.from_dict(ckpt["arch"])
    except ElsrError as exc:
        raise ElsrError(exc.problem, path=path, fix=exc.fix or "pass an ELSR checkpoint written by 'elsr train'") from exc


def infer_arch(state: dict[str, torch.Tensor], path: str | Path) -> dict:
    """Architecture of a bare ELSR state dict, from its tensor shapes."""
    try:
        channels = state["head.weight"].shape[0]
        scale = round((state["tail.weight"].shape[0] / 3) ** 0.5)
        prelu = "shared" if state["body_act.weight"].numel() == 1 else "channel"
    except KeyError as exc:
        raise ElsrError(f"state dict has no tensor {exc.args[0]!r}", path=path,
                        fix="this is not an ELSR state dict") from exc
    try:
        return ModelConfig(scale=scale, channels=channels, prelu=prelu).to_dict()
    except ElsrError as exc:
        raise ElsrError(f"state dict is not an ELSR model: {exc.problem}", path=path) from exc


def load_model(path: str | Path, scale: int | None = None) -> tuple[ELSR, dict]:
    """Build the model a checkpoint (or a bundled model's name: ``x2``, ``x4``) describes and load its
    weights (eval mode).

    ``scale``, when given, must match the checkpoint: a x2 model is never silently used as x4.
    """
    path = model_path(str(path))
    ckpt = read_checkpoint(path)
    config = arch_config(ckpt, path)
    if scale is not None and config.scale != scale:
        raise ElsrError(
            f"checkpoint is a x{config.scale} model but x{scale} was asked", path=path,
            fix=f"use --scale {config.scale}, or fine-tune it to x{scale} with a transfer stage (init: transfer)")
    model = ELSR(config)
    load_weights(model, ckpt["model"], str(path))
    model.eval()
    return model, ckpt
