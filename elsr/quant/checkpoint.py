"""QAT checkpoints (``.qat.pt``): the fake-quant weights and frozen ranges, reusable for every INT8 export."""

from __future__ import annotations

from pathlib import Path

import torch

from elsr.errors import ElsrError
from elsr.io.files import atomic_path
from elsr.model.checkpoint import arch_config, load_safely
from elsr.model.network import ELSR
from elsr.model.weights import refuse_non_finite
from elsr.quant.fake_quant import QuantELSR
from elsr.quant.qat import selected_metrics

QAT_FORMAT = "elsr-qat-checkpoint"
QAT_VERSION = 2   # 2: a split graph's copies have int8 weights of their own (elsr.quant.fake_quant)


def save_qat_checkpoint(path, qmodel: QuantELSR, history: list[dict], val_data: str | Path | None = None) -> None:
    """Fake-quant weights and frozen ranges, reusable for INT8 exports without training again; with the QAT
    history and, in ``meta``, the returned model's own validation scores on ``val_data``."""
    meta = {"val": selected_metrics(history), **({"val_data": str(val_data)} if val_data else {})}
    payload = {"format": QAT_FORMAT, "version": QAT_VERSION, "arch": qmodel.config.to_dict(), "split": qmodel.split,
               "model": {k: v.detach().cpu() for k, v in qmodel.state_dict().items()}, "history": history,
               "meta": meta}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_qat_checkpoint(path) -> tuple[QuantELSR, dict]:
    """The frozen fake-quant model of a ``.qat.pt`` file (read without running code) and its meta (the model's
    validation scores; {} in files written before they were recorded)."""
    ckpt = load_safely(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != QAT_FORMAT:
        raise ElsrError("not a QAT checkpoint", path=path, fix="pass the .qat.pt written by 'elsr quantize'")
    if not isinstance(ckpt.get("model"), dict) or not isinstance(ckpt.get("arch"), dict):
        raise ElsrError("QAT checkpoint without weights or architecture (damaged)", path=path,
                        fix="run 'elsr quantize' again")
    refuse_non_finite(ckpt["model"].items(), path)
    split = ckpt.get("split") is True
    if split and ckpt.get("version") != QAT_VERSION:
        raise ElsrError("QAT checkpoint from an older elsr, whose split skip path had one int8 weight for both copies",
                        path=path, fix="pass the INT8 .onnx made from it (elsr still reads those) or run "
                                       "'elsr quantize' again")
    qmodel = QuantELSR(ELSR(arch_config(ckpt, path)), split=split)
    state = {**qmodel.state_dict(), **ckpt["model"]}  # checkpoints from before learned ranges lack their keys
    misfit = set(state) != set(qmodel.state_dict())
    if not misfit:
        try:
            qmodel.load_state_dict(state)
        except (RuntimeError, TypeError, ValueError):  # a tensor of the wrong shape, or not a tensor
            misfit = True
    if misfit:
        raise ElsrError("QAT checkpoint does not fit this ELSR model", path=path, fix="run 'elsr quantize' again")
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    return qmodel.eval(), meta


def load_qat_checkpoint(path) -> QuantELSR:
    """The frozen fake-quant model of a ``.qat.pt`` file (read without running code)."""
    return read_qat_checkpoint(path)[0]
