"""Checkpoints: written atomically, read with ``weights_only=True``, self-describing."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import ElsrError
from .fileio import atomic_path
from .model import ELSR, ModelConfig, load_weights

FORMAT = "elsr-checkpoint"
VERSION = 1


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
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_safely(path: str | Path):
    """``torch.load`` with ``weights_only=True`` (no code execution), with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ElsrError("no such checkpoint file", path=path, fix="check the path")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ElsrError(
            "refused to load: the file contains Python objects other than tensors (it could run code)",
            path=path, fix="only use checkpoints saved by elsr or plain state dicts") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ElsrError("not a readable PyTorch checkpoint (corrupt or truncated)", path=path,
                        fix="re-download or re-create it") from exc


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file safely and check it is one of ours.

    A bare ELSR state dict is accepted too; its architecture is inferred from the shapes.
    """
    data = load_safely(path)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return data
    if isinstance(data, dict) and all(isinstance(v, torch.Tensor) for v in data.values()) and data:
        return {"format": FORMAT, "version": VERSION, "arch": infer_arch(data, path), "model": data, "meta": {}}
    raise ElsrError("not an ELSR checkpoint", path=path, fix="pass a model.pt written by 'elsr train'")


def infer_arch(state: dict[str, torch.Tensor], path: str | Path) -> dict:
    """Architecture of a bare ELSR state dict, from its tensor shapes."""
    try:
        channels = state["head.weight"].shape[0]
        scale = round((state["tail.weight"].shape[0] / 3) ** 0.5)
        prelu = "shared" if state["body_act.weight"].numel() == 1 else "channel"
    except KeyError as exc:
        raise ElsrError(f"state dict has no tensor {exc.args[0]!r}", path=path,
                        fix="this is not an ELSR state dict") from exc
    return ModelConfig(scale=scale, channels=channels, prelu=prelu).to_dict()


def load_model(path: str | Path, scale: int | None = None) -> tuple[ELSR, dict]:
    """Build the model a checkpoint describes and load its weights (eval mode).

    ``scale``, when given, must match the checkpoint: a x2 model is never silently used as x4.
    """
    ckpt = read_checkpoint(path)
    config = ModelConfig.from_dict(ckpt["arch"])
    if scale is not None and config.scale != scale:
        raise ElsrError(
            f"checkpoint is a x{config.scale} model but x{scale} was asked", path=path,
            fix=f"use --scale {config.scale}, or fine-tune it to x{scale} with a transfer stage (init: transfer)")
    model = ELSR(config)
    load_weights(model, ckpt["model"], str(path))
    model.eval()
    return model, ckpt
