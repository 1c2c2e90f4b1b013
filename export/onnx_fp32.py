"""A checkpoint as one self-contained FP32 ONNX file (torch.onnx, dynamo), checked against PyTorch.

The ONNX model takes ``lr`` (float32 NCHW RGB in [0, 1], any batch, height and width) and gives ``sr``
(``elsr.runtime.contract``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from elsr.errors import ElsrError
from elsr.io.files import atomic_path
from elsr.io.images import read_image
from elsr.model.inference import image_to_array
from elsr.model.network import ELSR, dcr_order
from elsr.runtime.contract import INPUT_NAME, OUTPUT_NAME, model_metadata
from elsr.runtime.onnx_model import onnx_session

EXAMPLE_SHAPE = (2, 3, 32, 32)  # traced once; batch, height and width stay dynamic
CHECK_SHAPES = ((1, 3, 17, 23), (2, 3, 64, 48), (1, 3, 180, 320))
MAX_CHECK_IMAGES = 3
OPSETS = range(7, onnx.defs.onnx_opset_version() + 1)   # the default-domain opsets onnx knows (--opset)
TOLERANCE = 1e-4
NOISY_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")  # the exporter's progress chatter and optional-package notes


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's warnings and log lines; its errors still raise."""
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _trace(model: ELSR, path: Path, opset: int | None) -> None:
    """torch.onnx (dynamo) export of ``model`` with dynamic batch, height and width."""
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    with _quiet_exporter():
        torch.onnx.export(model, (torch.rand(EXAMPLE_SHAPE),), str(path), dynamo=True, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_shapes=(dims,),
                          external_data=False, verbose=False)


def onnx_opset(proto) -> int:
    """The default-domain opset of an onnx ModelProto."""
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def depth_to_space_dcr(proto: onnx.ModelProto, scale: int) -> None:
    """Turn the exported PixelShuffle (DepthToSpace, CRD mode) into DCR mode, the one NNAPI and CoreML's
    NeuralNetwork take, with the tail conv's output channels permuted so the output is unchanged, bit for bit."""
    producers = {output: node for node in proto.graph.node for output in node.output}
    (d2s,) = [node for node in proto.graph.node if node.op_type == "DepthToSpace"]
    mode = next(a for a in d2s.attribute if a.name == "mode")
    conv = producers.get(d2s.input[0])
    if mode.s != b"CRD" or conv is None or conv.op_type != "Conv" or len(conv.input) != 3:
        raise ElsrError(f"the exporter wrote PixelShuffle as an unexpected graph (DepthToSpace {mode.s.decode()} "
                        f"after {conv.op_type if conv else 'a graph input'})", fix="report it with the torch version")
    initializers = {init.name: init for init in proto.graph.initializer}
    users = [name for node in proto.graph.node for name in node.input if name in conv.input[1:]]
    if len(users) != 2 or not all(name in initializers for name in conv.input[1:]):
        raise ElsrError("the tail conv's weights are shared or not constant in the exported graph",
                        fix="report it with the torch version")
    order = dcr_order(scale)
    for name in conv.input[1:]:
        initializers[name].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(initializers[name])[order], name))
    mode.s = b"DCR"


def export_onnx(model: ELSR, out: str | Path, opset: int | None = None, meta: dict | None = None, *,
                overwrite: bool = False) -> Path:
    """Write ``model`` as one self-contained, checked FP32 ONNX file (atomically) and return its path.

    ``opset`` None is the exporter's default; ``meta`` is the checkpoint's meta (for psnr_y, val_data).
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise ElsrError("output exists", path=out, fix="pass --overwrite")
    model = copy.deepcopy(model).cpu().eval()
    with tempfile.TemporaryDirectory(prefix="elsr-export-") as tmp:
        traced = Path(tmp) / "model.onnx"
        _trace(model, traced, opset)
        proto = onnx.load(str(traced))  # pulls in any external tensor data
    if opset is not None and onnx_opset(proto) != opset:
        raise ElsrError(f"the exporter cannot write opset {opset} (it gave {onnx_opset(proto)})",
                        fix="choose another --opset, or leave it out for the default")
    depth_to_space_dcr(proto, model.scale)
    onnx.helper.set_model_props(proto, model_metadata(model, "fp32", meta))
    onnx.checker.check_model(proto, full_check=True)
    with atomic_path(out) as tmp_out:
        onnx.save_model(proto, str(tmp_out), save_as_external_data=False)
    return out


def check_inputs(images: Sequence[Path] = (), seed: int = 0) -> list[np.ndarray]:
    """Random NCHW inputs of CHECK_SHAPES, then each image (RGB, its own size) as a 1x3xHxW input."""
    rng = np.random.default_rng(seed)
    inputs = [rng.random(shape, dtype=np.float32) for shape in CHECK_SHAPES]
    return inputs + [image_to_array(read_image(path, convert=True)) for path in images]


@torch.no_grad()
def parity_errors(model: ELSR, onnx_path: str | Path,
                  inputs: Sequence[np.ndarray | torch.Tensor]) -> list[tuple[tuple[int, ...], float]]:
    """(input shape, max abs error of onnxruntime against PyTorch on CPU) for each NCHW float input."""
    session = onnx_session(onnx_path, "cpu")
    name = session.get_inputs()[0].name
    model = copy.deepcopy(model).cpu().eval()
    errors = []
    for x in inputs:
        x = torch.as_tensor(x, dtype=torch.float32)
        got = session.run(None, {name: x.numpy()})[0]
        errors.append((tuple(x.shape), float(np.abs(got - model(x).numpy()).max())))
    return errors


def require_parity(errors: Sequence[tuple[tuple[int, ...], float]], onnx_path: str | Path,
                   tol: float = TOLERANCE) -> float:
    """The largest error; ElsrError when it is above ``tol``."""
    shape, worst = max(errors, key=lambda e: e[1])
    if not worst <= tol:  # NaN fails too
        raise ElsrError(f"ONNX output differs from PyTorch by {worst:.3g} on a {'x'.join(map(str, shape))} input "
                        f"(tolerance {tol:g})", path=onnx_path, fix="try another --opset")
    return worst


def check_parity(model: ELSR, onnx_path: str | Path, inputs: Sequence[np.ndarray | torch.Tensor],
                 tol: float = TOLERANCE) -> float:
    """Max abs error of the ONNX model against PyTorch over ``inputs``; ElsrError above ``tol``."""
    return require_parity(parity_errors(model, onnx_path, inputs), onnx_path, tol)

