"""What every loaded model offers, whatever runs it: HWC uint8 RGB in, ``scale`` times larger out.

A model runs in three steps so that a benchmark can time the middle one alone: ``prepare`` turns an
NCHW float32 input in [0, 1] into the runtime's own tensor (layout, dtype, device), ``forward`` runs it,
``fetch`` gives the raw output back as an NCHW float32 array on the host.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from elsr.errors import ElsrError
from elsr.io.files import disk_bytes
from elsr.model.inference import array_to_image, image_to_array
from elsr.model.network import RECEPTIVE_RADIUS, ModelConfig, config_from_parameters
from elsr.runtime.contract import positive_int
from elsr.runtime.tiling import upscale_tiled

PROBE_SIZE = 4  # side of the blank image run to find the scale of a model without metadata
TILE_OVERLAP = 2 * RECEPTIVE_RADIUS  # LR pixels of context around a tile: its kept core is exact


@dataclass
class ModelInfo:
    """What a report says about a loaded model."""

    precision: str                      # fp32, fp16, 'int8 qat', 'int8 qat, uint8 I/O', ...
    params: int | None
    size_bytes: int
    config: ModelConfig | None          # the ELSR architecture (for MAC counts); None when it cannot be known
    notes: list[str] = field(default_factory=list)


class Upscaler:
    """A model file loaded in its runtime. Subclasses set ``path``, ``name``, ``scale``, ``device`` and
    implement ``forward`` (and ``prepare`` / ``fetch`` where the runtime's tensors are not numpy NCHW)."""

    path: Path
    name: str
    scale: int
    device: str = "cpu"
    fixed_size: tuple[int, int] | None = None   # (height, width) of a fixed-shape model
    fixed_batch: int | None = None
    max_size: tuple[int, int] | None = None     # (height, width) a dynamic model takes at most (larger: in tiles)

    def prepare(self, x: np.ndarray) -> Any:
        """NCHW float32 in [0, 1] -> the runtime's input."""
        return np.ascontiguousarray(x, dtype=np.float32)

    def forward(self, prepared: Any) -> Any:
        raise NotImplementedError

    def fetch(self, y: Any) -> np.ndarray:
        """The output of ``forward`` as an NCHW float32 array on the host (waits for it)."""
        return np.asarray(y)

    def run_array(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 in [0, 1] -> NCHW float32 (the model's raw output, unclipped)."""
        return self.fetch(self.forward(self.prepare(x)))

    def upscale_frame(self, lr: np.ndarray) -> np.ndarray:
        """One HWC uint8 RGB image of exactly the model's input size (any size for a dynamic model)."""
        x = image_to_array(lr)
        if self.fixed_batch and self.fixed_batch > 1:
            x = np.repeat(x, self.fixed_batch, axis=0)
        return array_to_image(self.run_array(x)[:1])

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        """HWC uint8 RGB in, HWC uint8 RGB ``scale`` times larger out (fixed-shape models in windows, images
        beyond a dynamic model's bound in tiles)."""
        if self.fixed_size is not None:
            return fixed_size_tiles(self.checked_frame, lr, self.fixed_size, self.scale)
        if self.max_size is not None and (lr.shape[0] > self.max_size[0] or lr.shape[1] > self.max_size[1]):
            tile = min(self.max_size) - 2 * TILE_OVERLAP
            return upscale_tiled(self.checked_frame, lr, self.scale, tile, TILE_OVERLAP)
        return self.checked_frame(lr)

    def checked_frame(self, lr: np.ndarray) -> np.ndarray:
        """:meth:`upscale_frame`, refused in one line when the output is not ``scale`` times the input (a model
        whose metadata lies about its scale) rather than failing in whatever uses the pixels."""
        sr = self.upscale_frame(lr)
        want = (lr.shape[0] * self.scale, lr.shape[1] * self.scale, 3)
        if sr.shape != want:
            raise ElsrError(f"the model turned a {lr.shape[1]}x{lr.shape[0]} image into "
                            f"{'x'.join(map(str, sr.shape[1::-1]))} pixels, not the {want[1]}x{want[0]} of its "
                            f"x{self.scale} scale", path=self.path,
                            fix="its 'scale' metadata or its graph is wrong: re-export it with 'elsr export'")
        return sr

    @contextlib.contextmanager
    def active(self) -> Iterator["Upscaler"]:
        """Process-wide settings (thread counts) while this model runs."""
        yield self

    def info(self) -> ModelInfo:
        raise NotImplementedError

    def gpu_peak_bytes(self) -> int | None:
        """GPU memory high-water mark since the model was loaded, where the runtime reports it."""
        return None

    def close(self) -> None:
        """Release the model (sessions, GPU memory)."""


def info_from_metadata(path: Path, metadata: dict[str, str], precision: str | None) -> ModelInfo:
    """Parameters and architecture of a model file from its metadata; the precision as given, with the
    quantization method ('int8 qat', 'int8 ptq') where the metadata names one."""
    notes: list[str] = []
    method = (metadata.get("quantization") or "").split(";")[0].strip()
    if precision and method:
        precision = f"{precision} {method}"
    params, scale = positive_int(metadata.get("parameters")), positive_int(metadata.get("scale"))
    config = config_from_parameters(scale, params) if params and scale else None
    if config is None:
        notes.append("GMAC/s unknown: no 'scale'/'parameters' metadata matching an ELSR architecture")
    return ModelInfo(precision or "unknown", params, disk_bytes(path), config, notes)


def typed_io_info(path: Path, metadata: dict[str, str], input_dtype) -> ModelInfo:
    """ModelInfo of a model file whose runtime names its input type (TFLite, ExecuTorch): the precision from the
    metadata, with the I/O type after it; without elsr metadata, the I/O type alone."""
    io = f"{input_dtype} I/O"
    if not metadata:
        return ModelInfo(io, None, path.stat().st_size, None,
                         ["no elsr metadata: precision from the input type, GMAC/s unknown"])
    info = info_from_metadata(path, metadata, metadata.get("precision"))
    info.precision = f"{info.precision}, {io}"
    return info


def probe_scale(run: Callable[[np.ndarray], np.ndarray], path: Path, fix: str,
                fixed: tuple[int, tuple[int, int]] | None = None) -> int:
    """The scale of a model without a 'scale' entry: the ratio of output to input on a blank image
    (``PROBE_SIZE`` square, or the ``(batch, (height, width))`` a fixed-shape model takes)."""
    batch, (height, width) = fixed or (1, (PROBE_SIZE, PROBE_SIZE))
    try:
        out_height, out_width = run(np.zeros((batch, 3, height, width), np.float32)).shape[2:]
    except Exception as exc:  # noqa: BLE001 - runtimes raise their own error types for unrunnable shapes
        raise ElsrError(f"the model fails on a {width}x{height} image: {exc}", path=path, fix=fix) from exc
    if out_height * width != out_width * height or out_height % height or out_height == 0:
        raise ElsrError(f"cannot tell the scale: a {width}x{height} image gave {out_width}x{out_height}",
                        path=path, fix=fix)
    return out_height // height


def check_scale(found: int, asked: int | None, path: Path, kind: str) -> int:
    """``found``; an error when ``asked`` is given and differs (a x2 model is never used as x4)."""
    if asked is not None and asked != found:
        raise ElsrError(f"{kind} model is a x{found} model but x{asked} was asked", path=path,
                        fix=f"use --scale {found}, or export a x{asked} checkpoint")
    return found


def require_upscaling(upscaler: Upscaler) -> int:
    """The model's scale; a model that does not enlarge (a foreign ONNX graph, say) is refused."""
    if upscaler.scale < 2:
        raise ElsrError(f"the model gives x{upscaler.scale} output: not a super-resolution model", path=upscaler.path,
                        fix="pass an ELSR checkpoint or an ONNX model written by 'elsr export'")
    return upscaler.scale


def fixed_size_tiles(upscale: Callable[[np.ndarray], np.ndarray], lr: np.ndarray, size: tuple[int, int], scale: int,
                     overlap: int = TILE_OVERLAP) -> np.ndarray:
    """``upscale(lr)`` for a model that only takes LR images of exactly ``size`` (height, width).

    Windows of that size, overlapping by ``overlap`` pixels of context and placed inside the image, so
    an image at least that large gives exactly what a dynamic-shape model gives. A smaller image is
    padded by edge replication, which changes the pixels within the receptive radius of its bottom and
    right edges.
    """
    height, width = lr.shape[:2]
    padded = np.pad(lr, ((0, max(size[0] - height, 0)), (0, max(size[1] - width, 0)), (0, 0)), mode="edge")
    return upscale_tiled(upscale, padded, scale, 0, overlap, window=size)[:height * scale, :width * scale]
