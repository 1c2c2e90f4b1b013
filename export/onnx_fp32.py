"""``elsr export``: a checkpoint to one self-contained FP32 ONNX file, checked against PyTorch.

The model takes ``lr`` (float32 NCHW RGB in [0, 1], any batch, height and width) and gives ``sr``.
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
import torch

from elsr.checkpoint import load_model
from elsr.errors import ElsrError
from elsr.fileio import atomic_path
from elsr.imageio import list_images, read_image
from elsr.inference import image_to_array
from elsr.model import ELSR, count_parameters
from elsr.provenance import provenance

from .runtime import onnx_session

FORMAT_TAG = "elsr-onnx"
INPUT_NAME, OUTPUT_NAME = "lr", "sr"
EXAMPLE_SHAPE = (2, 3, 32, 32)  # traced once; batch, height and width stay dynamic
CHECK_SHAPES = ((1, 3, 17, 23), (2, 3, 64, 48), (1, 3, 180, 320))
MAX_CHECK_IMAGES = 3
TOLERANCE = 1e-4
NOISY_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")  # the exporter's progress chatter and optional-package notes


def onnx_metadata(model: ELSR, precision: str = "fp32", meta: dict | None = None) -> dict[str, str]:
    """The metadata_props every elsr ONNX model carries (all values are strings)."""
    meta = meta or {}
    fields: dict[str, object] = {
        "format": FORMAT_TAG, "scale": model.scale, "value_range": "0..1", "channel_order": "RGB",
        "layout": "NCHW", "input": INPUT_NAME, "output": OUTPUT_NAME, "precision": precision,
        "parameters": count_parameters(model)}
    psnr_y = (meta.get("val") or {}).get("psnr_y")
    if psnr_y is not None:
        fields["psnr_y"] = f"{psnr_y:.4f}"
    if meta.get("val_data"):
        fields["psnr_data"] = meta["val_data"]
    fields.update(provenance())
    return {key: str(value) for key, value in fields.items()}


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


def export_onnx(model: ELSR, out: str | Path, opset: int | None = None, meta: dict | None = None, *,
                overwrite: bool = False) -> Path:
    """Write ``model`` as one self-contained, checked FP32 ONNX file (atomically) and return its path.

    ``opset`` None is the exporter's default; ``meta`` is the checkpoint's meta (for psnr_y, val_data).
    """
    import onnx

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
    onnx.helper.set_model_props(proto, onnx_metadata(model, "fp32", meta))
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


def add_arguments(parser) -> None:
    from .formats import FORMATS

    parser.add_argument("--weights", type=Path, required=True, help="checkpoint to export (model.pt)")
    parser.add_argument("--out", type=Path, help="output file (default: elsr_x{scale}.onnx in the current folder)")
    parser.add_argument("--format", default="onnx", choices=sorted(FORMATS),
                        help="; ".join(f"{f.name}: {f.description}" for f in FORMATS.values()))
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--scale", type=int, help="expected scale (must match the checkpoint)")
    parser.add_argument("--check-images", type=Path, metavar="DIR",
                        help=f"also check parity on up to {MAX_CHECK_IMAGES} of these images, as LR at their own size")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args) -> int:
    import onnx

    from .formats import FORMATS

    fmt = FORMATS[args.format]
    fmt.ensure_available()
    model, ckpt = load_model(args.weights, args.scale)
    out = args.out or Path(f"elsr_x{model.scale}{fmt.suffix}")
    images = list_images(args.check_images)[:MAX_CHECK_IMAGES] if args.check_images else []
    inputs = check_inputs(images)
    fmt.export(model, out, opset=args.opset, meta=ckpt.get("meta"), overwrite=args.overwrite)
    opset = onnx_opset(onnx.load(str(out), load_external_data=False))
    print(f"wrote {out} ({out.stat().st_size / 1024:.1f} KiB, opset {opset}, x{model.scale})")
    errors = parity_errors(model, out, inputs)
    labels = ["random"] * len(CHECK_SHAPES) + [path.name for path in images]
    for label, (shape, error) in zip(labels, errors):
        print(f"parity {label} {'x'.join(map(str, shape))}: max abs error {error:.2e}")
    try:
        require_parity(errors, out)
    except ElsrError as exc:
        out.unlink(missing_ok=True)
        raise ElsrError(f"{exc.problem}; the file was removed", path=out, fix=exc.fix) from exc
    return 0
