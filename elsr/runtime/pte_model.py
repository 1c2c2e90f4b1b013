"""ExecuTorch programs (.pte) in ExecuTorch's own runtime (its Python bindings; XNNPACK delegate on the CPU).

The runtime comes from the optional ``executorch`` package (``pip install 'elsr[executorch]'``); everything here
says so in one line when it is missing. A ``.pte`` file is data: it is loaded with the runtime's full
verification (``InternalConsistency``: internal offsets checked, truncation detected), and a file the runtime
refuses is one line naming it, with the runtime's own reason.

Two properties of the runtime shape this module:

- its native code logs to the process's stderr (file descriptor 2), also for ordinary events (a line per CPU
  probe when XNNPACK starts); that output is collected while a program loads and used as the reason when
  loading fails, and not shown otherwise;
- its thread pool is process-wide and can be resized only before the first method is loaded (resizing it
  later crashes the process), so a process runs every ExecuTorch program with one thread count
  (``set_threads``); the benchmark runs each ExecuTorch row in a process of its own.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from elsr.errors import ElsrError
from elsr.model.network import MIN_LR_SIDE
from elsr.runtime.base import ModelInfo, Upscaler, check_scale, probe_scale, typed_io_info
from elsr.runtime.contract import NCHW, NHWC, PTE_METADATA_METHOD, PTE_METHOD, positive_int

PTE_SUFFIXES = (".pte",)
EXECUTORCH_PACKAGE = "executorch"     # the module the executorch extra installs
EXTRA_HINT = "pip install 'elsr[executorch]'"
REEXPORT = "re-export it with 'elsr export --format executorch'"
NATIVE_NOISE = ("cpuinfo_utils.cpp",)  # log lines the runtime writes on every start, not about the file
SCALAR_TYPES = {1: np.int8, 6: np.float32}   # ExecuTorch ScalarType codes of the I/O tensors we use
TORCH_TYPES = {np.dtype(np.int8): torch.int8, np.dtype(np.float32): torch.float32}


def executorch_available() -> bool:
    return importlib.util.find_spec(EXECUTORCH_PACKAGE) is not None


def require_executorch() -> None:
    """ElsrError with the install hint when the ExecuTorch package is missing."""
    if not executorch_available():
        raise ElsrError(f"ExecuTorch support needs the optional package {EXECUTORCH_PACKAGE!r}", fix=EXTRA_HINT)


@contextlib.contextmanager
def native_stderr() -> Iterator[list[str]]:
    """Collect what is written to stderr meanwhile, by native code (file descriptor 2) and through Python's
    ``sys.stderr`` (where the runtime's bindings send its log): the list is filled when the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    lines: list[str] = []
    with tempfile.TemporaryFile() as sink, io.StringIO() as python_side:
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stderr(python_side):
                yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace") + python_side.getvalue()
            lines += [line for line in text.splitlines()
                      if line.strip() and not any(noise in line for noise in NATIVE_NOISE)]


def import_executorch(module: str):
    """An ExecuTorch module, imported without its import-time chatter (experimental-API warnings, torchao's
    notes on kernels it cannot load)."""
    require_executorch()
    chatty = logging.getLogger("torchao")   # logs a WARNING per optional kernel library it cannot load
    level = chatty.level
    chatty.setLevel(logging.ERROR)
    try:
        with native_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(module)
    finally:
        chatty.setLevel(level)


def runtime():
    """ExecuTorch's runtime singleton (``executorch.runtime.Runtime``)."""
    return import_executorch("executorch.runtime").Runtime.get()


def _bindings():
    return import_executorch("executorch.extension.pybindings.portable_lib")


class _Process:
    """Whether this process has loaded an ExecuTorch method (after which its thread count is fixed)."""

    method_loaded = False


def thread_count() -> int:
    with native_stderr():  # the pool's creation probes the CPU, and logs it
        return int(_bindings()._threadpool_get_thread_count())


def set_threads(threads: int, path: Path | None = None) -> int:
    """Size ExecuTorch's process-wide thread pool (0: leave it as it is); the count it runs with.

    Possible only until the first method is loaded: the runtime crashes when its pool is resized under a
    loaded method (``_unsafe_reset_threadpool``), so a different count later is an ElsrError instead.
    """
    current = thread_count()
    if threads <= 0 or threads == current:
        return current
    if _Process.method_loaded:
        raise ElsrError(f"ExecuTorch runs {current} threads in this process and cannot change that once a "
                        f"program is loaded ({threads} asked)", path=path,
                        fix="run each thread count in its own process (python -m elsr.benchmarks does)")
    with native_stderr():
        _bindings()._unsafe_reset_threadpool(threads)
    return threads


def _reason(exc: Exception, native: list[str]) -> str:
    """The runtime's own words for a failure: its first log line (without the source location), else the error."""
    if native:
        return native[0].split("] ", 1)[-1].strip()
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PteModel:
    """The ``forward`` method of a .pte file in ExecuTorch's runtime, with the file's metadata and I/O types."""

    def __init__(self, path: str | Path, threads: int = 0, profiled: bool = False) -> None:
        """``profiled``: ExecuTorch records each operator's time (ETDump, ``write_profile``)."""
        self.path = Path(path)
        if not self.path.is_file():
            raise ElsrError("no such model file", path=self.path, fix="check the path")
        rt = runtime()
        self.threads = set_threads(threads, self.path)
        failure = None
        with native_stderr() as native:   # filled when the block ends
            try:
                program = rt.load_program(self.path, enable_etdump=profiled)
                names = program.method_names
                self.method = program.load_method(PTE_METHOD) if PTE_METHOD in names else None
                self.metadata = _metadata(program) if PTE_METADATA_METHOD in names else {}
            except Exception as exc:  # noqa: BLE001 - the bindings raise RuntimeError with a bare error code
                failure = exc
        if failure is not None:
            raise ElsrError(f"ExecuTorch cannot load it: {_reason(failure, native)}", path=self.path,
                            fix=REEXPORT) from failure
        if self.method is None:
            raise ElsrError(f"no '{PTE_METHOD}' method in this ExecuTorch program (it has {', '.join(sorted(names))})",
                            path=self.path, fix="pass a program written by 'elsr export --format executorch'")
        _Process.method_loaded = True
        self.program = program
        meta = self.method.metadata
        if meta.num_inputs() != 1 or meta.num_outputs() != 1:
            raise ElsrError("not an image model: expected one input and one output", path=self.path)
        self.input_dtype = self._dtype(meta.input_tensor_meta(0))
        self.output_dtype = self._dtype(meta.output_tensor_meta(0))
        self.input_sizes = tuple(meta.input_tensor_meta(0).sizes())  # the upper bound of a dynamic program
        self.layout = NHWC if self.metadata.get("layout") == NHWC else NCHW   # ours: NHWC; older or foreign: NCHW
        channel_axis = 3 if self.layout == NHWC else 1
        if len(self.input_sizes) != 4 or self.input_sizes[channel_axis] != 3:
            expected = "NxHxWx3" if self.layout == NHWC else "Nx3xHxW"
            raise ElsrError(f"not an image model: input of shape {list(self.input_sizes)}, expected {expected}",
                            path=self.path)
        output_sizes = list(meta.output_tensor_meta(0).sizes())
        if self.layout == NHWC and not _nhwc_output(output_sizes, self.input_sizes):
            raise ElsrError(f"its metadata says NHWC but its output has shape {output_sizes}, not the "
                            f"[N, 3s, H, sW] of one for input {list(self.input_sizes)}", path=self.path,
                            fix=REEXPORT)
        with native_stderr():  # the first run starts XNNPACK, which logs what it finds of the CPU
            self.run(torch.zeros(self.nchw_to_layout((1, 3, MIN_LR_SIDE, MIN_LR_SIDE)) if self.dynamic
                                 else self.input_sizes, dtype=TORCH_TYPES[self.input_dtype]))

    def _dtype(self, info) -> np.dtype:
        code = int(info.dtype())
        if code not in SCALAR_TYPES:
            raise ElsrError(f"not an image model: a tensor of ExecuTorch type {code}, expected float32 or int8",
                            path=self.path)
        return np.dtype(SCALAR_TYPES[code])

    def nchw_to_layout(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], *shape[2:], shape[1]) if self.layout == NHWC else shape

    @property
    def batch_and_size(self) -> tuple[int, tuple[int, int]]:
        """The input's batch and (height, width): fixed, or the bound of a dynamic program."""
        n, *rest = self.input_sizes
        return n, tuple(rest[:2] if self.layout == NHWC else rest[1:])

    @property
    def dynamic(self) -> bool:
        """Height and width may vary (up to ``input_sizes``): what the metadata says; a foreign file is fixed."""
        return self.metadata.get("shape") == "dynamic"

    def write_profile(self, etdump: Path, debug: Path) -> None:
        """What ExecuTorch recorded so far (a ``profiled`` program): the ETDump file and its debug buffer."""
        self.program.write_etdump_result_to_file(str(etdump), str(debug))

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """One call of ``forward`` on a prepared tensor; its output tensor."""
        try:
            return self.method.execute([x])[0]
        except RuntimeError as exc:
            raise ElsrError(f"ExecuTorch failed on a {'x'.join(map(str, x.shape))} input: {exc}", path=self.path,
                            fix=f"inputs up to {'x'.join(map(str, self.input_sizes))} ({self.layout})") from exc


def _metadata(program) -> dict[str, str]:
    """The JSON the constant method returns ({} when it is not JSON)."""
    raw = program.load_method(PTE_METADATA_METHOD).execute([])[0]
    try:
        data = json.loads(bytes(raw.numpy().astype(np.uint8)).decode())
    except (ValueError, UnicodeDecodeError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _nhwc_output(sizes: list[int], input_sizes: tuple[int, ...]) -> bool:
    """Whether ``sizes`` is the output of an NHWC program for ``input_sizes`` ([N, H, W, 3]): [N, 3s, H, sW]."""
    if len(sizes) != 4 or sizes[1] % 3 or sizes[1] < 3:
        return False
    scale = sizes[1] // 3
    return sizes[0] == input_sizes[0] and sizes[2] == input_sizes[1] and sizes[3] == scale * input_sizes[2]


def nhwc_image(y: np.ndarray) -> np.ndarray:
    """An NHWC program's output, [n, 3s, h, sw] in channels-last memory, as the image [n, sh, sw, 3] whose bytes
    it is (a view, when the memory is channels-last as ours is)."""
    n, channels, height, width = y.shape
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1)).reshape(n, height * (channels // 3), width, 3)


class PteUpscaler(Upscaler):
    """A .pte program run by ExecuTorch (XNNPACK on the CPU): NHWC float32 RGB in [0, 1], or int8 pixels minus 128
    (``--io int8``), in and out (a program without our NHWC layout in its metadata: NCHW); larger images than the
    program's bound run in tiles."""

    def __init__(self, path: str | Path, scale: int | None = None, device: str = "auto", threads: int = 0) -> None:
        if device == "cuda":
            raise ElsrError("ExecuTorch programs run on the CPU here", path=path, fix="use --device cpu or auto")
        self.path = Path(path)
        self.name = self.path.name
        self.model = PteModel(self.path, threads)
        batch, size = self.model.batch_and_size
        if self.model.dynamic:
            self.max_size = size
        else:
            self.fixed_size, self.fixed_batch = size, batch
        stored = positive_int(self.model.metadata.get("scale"))
        fixed = None if self.model.dynamic else (batch, size)
        self.scale = check_scale(stored or probe_scale(self.run_array, self.path, REEXPORT, fixed), scale, self.path,
                                 "ExecuTorch")

    def prepare(self, x: np.ndarray) -> torch.Tensor:
        if self.model.input_dtype == np.int8:   # pixels minus 128
            x = np.clip(np.round(x * 255), 0, 255) - 128
        x = x.transpose(0, 2, 3, 1) if self.model.layout == NHWC else x
        return torch.from_numpy(np.ascontiguousarray(x, dtype=self.model.input_dtype))

    def forward(self, prepared: torch.Tensor) -> torch.Tensor:
        return self.model.run(prepared)

    def fetch(self, y: torch.Tensor) -> np.ndarray:
        y = y.numpy()
        y = nhwc_image(y).transpose(0, 3, 1, 2) if self.model.layout == NHWC else y
        return (y.astype(np.float32) + 128) / np.float32(255) if y.dtype == np.int8 else np.asarray(y, np.float32)

    def run_array(self, x: np.ndarray) -> np.ndarray:
        """Any batch: a dynamic program takes one image at a time (its memory is planned for one)."""
        if not self.model.dynamic or len(x) <= self.model.input_sizes[0]:
            return super().run_array(x)
        return np.concatenate([super(PteUpscaler, self).run_array(x[i: i + 1]) for i in range(len(x))])

    def upscale_frame(self, lr: np.ndarray) -> np.ndarray:
        """An int8-I/O program takes and gives the bytes with the top bit flipped (pixel - 128): no float step (and,
        NHWC, no transpose)."""
        if self.model.input_dtype != np.int8 or self.model.output_dtype != np.int8:
            return super().upscale_frame(lr)
        nhwc = self.model.layout == NHWC
        x = (np.ascontiguousarray(lr[None] if nhwc else lr.transpose(2, 0, 1)[None]) ^ np.uint8(128)).view(np.int8)
        y = self.forward(torch.from_numpy(x)).numpy()
        y = nhwc_image(y)[0] if nhwc else y[0].transpose(1, 2, 0)
        return np.ascontiguousarray(y.view(np.uint8) ^ np.uint8(128))

    def info(self) -> ModelInfo:
        return typed_io_info(self.path, self.model.metadata, self.model.input_dtype)

    def close(self) -> None:
        del self.model

