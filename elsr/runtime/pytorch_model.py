"""A PyTorch checkpoint as an upscaler: eager (NCHW or channels_last) or torch.compile, CPU or CUDA, FP32 or FP16."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from elsr.model.checkpoint import load_model
from elsr.model.inference import resolve_device
from elsr.model.network import count_parameters
from elsr.runtime.base import ModelInfo, Upscaler

CHECKPOINT_SUFFIXES = (".pt", ".pth")


class TorchUpscaler(Upscaler):
    """``threads`` (0: PyTorch's choice) applies while the model is ``active()``; ``half`` runs FP16 (CUDA)."""

    def __init__(self, path: str | Path, scale: int | None = None, device: str = "auto", threads: int = 0, *,
                 half: bool = False, channels_last: bool = False, compiled: bool = False) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.torch_device = resolve_device(device)
        self.device = self.torch_device.type
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        model, self.checkpoint = load_model(self.path, scale)
        self.config, self.scale, self.threads = model.config, model.scale, threads
        self.dtype = torch.float16 if half else torch.float32
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.torch_device, self.dtype).to(memory_format=self.memory_format)
        self.params = count_parameters(model)
        if compiled:
            self.model = torch.compile(self.model)

    def prepare(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(
            self.torch_device, self.dtype).contiguous(memory_format=self.memory_format)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def fetch(self, y: torch.Tensor) -> np.ndarray:
        return y.detach().float().cpu().numpy()

    @contextlib.contextmanager
    def active(self) -> Iterator["TorchUpscaler"]:
        previous = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            yield self
        finally:
            torch.set_num_threads(previous)

    def info(self) -> ModelInfo:
        precision = "fp16" if self.dtype == torch.float16 else "fp32"
        return ModelInfo(precision, self.params, self.path.stat().st_size, self.config)

    def gpu_peak_bytes(self) -> int | None:
        return torch.cuda.max_memory_allocated() if self.device == "cuda" else None

    def close(self) -> None:
        del self.model
        if self.device == "cuda":
            torch.cuda.empty_cache()
