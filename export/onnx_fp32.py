"""``elsr export``: a checkpoint to one self-contained FP32 ONNX file, checked against PyTorch; and the
``elsr export`` command for every format of ``export.formats`` (ONNX, ORT, TFLite; FP32 or INT8 from QAT).

The ONNX model takes ``lr`` (float32 NCHW RGB in [0, 1], any batch, height and width) and gives ``sr``.
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
from elsr.pretrained import model_path
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


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """'1x3x180x320' -> (1, 3, 180, 320): an NCHW shape with 3 channels."""
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1 or dims[1] != 3:
        raise ElsrError(f"--fixed-shape {text!r} is not an NCHW shape with 3 channels", fix="e.g. 1x3x180x320")
    return dims  # type: ignore[return-value]


def add_arguments(parser) -> None:
    from .formats import FORMATS

    parser.add_argument("--weights", type=model_path, required=True,
                        help="checkpoint to export (model.pt), or x2 / x4 for a bundled one")
    parser.add_argument("--out", type=Path,
                        help="output file (default: elsr_x{scale}[_int8][_uint8io].{onnx,ort,tflite} here)")
    parser.add_argument("--format", default="onnx", choices=list(FORMATS),
                        help="; ".join(f"{f.name}: {f.description}" for f in FORMATS.values()))
    parser.add_argument("--int8", action="store_true",
                        help="INT8 from quantization-aware training: --qat-checkpoint, or --train and --val to run QAT")
    parser.add_argument("--qat-checkpoint", type=Path, metavar="QAT_PT",
                        help="with --int8: reuse this QAT result: a .qat.pt (from 'elsr quantize' or an earlier --int8 "
                             "export) or the INT8 .onnx built from one (e.g. elsr/pretrained/elsr_x4_int8.onnx)")
    parser.add_argument("--train", type=Path, help="with --int8 and no --qat-checkpoint: QAT training images or .h5")
    parser.add_argument("--val", type=Path, help="with --int8 and no --qat-checkpoint: QAT validation HR images")
    parser.add_argument("--qat-epochs", type=int, help="QAT epochs (default: elsr quantize's)")
    parser.add_argument("--qat-iters", type=int, help="QAT iterations per epoch (default: elsr quantize's)")
    parser.add_argument("--fixed-shape", metavar="NxCxHxW",
                        help="fix the input shape (e.g. 1x3x180x320; NNAPI, CoreML and TFLite delegates want it); "
                             "default: dynamic batch, height and width")
    parser.add_argument("--uint8-io", action="store_true",
                        help="tflite: uint8 RGB in and out (NHWC pixels, no float pre/post-processing on the phone)")
    parser.add_argument("--opset", type=int, help="ONNX opset of the FP32 graph (default: the exporter's)")
    parser.add_argument("--scale", type=int, help="expected scale (must match the checkpoint)")
    parser.add_argument("--check-images", type=Path, metavar="DIR",
                        help=f"also check parity on up to {MAX_CHECK_IMAGES} of these images, as LR at their own size")
    parser.add_argument("--validate", type=Path, nargs="+", default=[], metavar="HR_DIR",
                        help="run the artifact in its own runtime on these HR image folders: PSNR-Y against ground "
                             "truth and against the FP32 PyTorch model")
    parser.add_argument("--convert", action="store_true",
                        help="convert greyscale / RGBA / 16-bit images (e.g. Set14) instead of refusing them")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="QAT device")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _qat_model(args, model: ELSR, out: Path):
    """The QAT model for --int8: from --qat-checkpoint, or trained now (and saved beside ``out`` for reuse)."""
    import logging

    from elsr.data import ValidationSet, open_training_data
    from elsr.inference import resolve_device
    from elsr.quantization import QATConfig, save_qat_checkpoint, train_qat

    from .formats import load_int8_source

    if args.qat_checkpoint is not None:
        qmodel, params = load_int8_source(args.qat_checkpoint)
        if qmodel.config != model.config:
            raise ElsrError(f"QAT checkpoint is a {qmodel.config} model but --weights is a {model.config} model",
                            path=args.qat_checkpoint, fix="pass the .qat.pt made from these weights")
        with torch.no_grad():  # compare what the networks compute (QAT may rescale channels: equalization)
            x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
            reference = model.eval()(x)
            drift = float((qmodel.to_float()(x) - reference).norm() / reference.norm().clamp_min(1e-12))
        if drift > 0.2:
            logging.getLogger(__name__).warning(
                "%s: its float network's output differs from %s's by %.0f%% (it may come from other weights; "
                "INT8 is compared with --weights)", args.qat_checkpoint, args.weights, 100 * drift)
        return qmodel, params
    if args.train is None or args.val is None:
        raise ElsrError("--int8 needs the QAT weights and ranges",
                        fix="pass --qat-checkpoint QAT.pt, or --train DIR and --val DIR to run QAT now")
    cfg = QATConfig(**{k: v for k, v in (("epochs", args.qat_epochs), ("iters_per_epoch", args.qat_iters))
                       if v is not None})
    source = open_training_data(args.train, args.convert)
    val = ValidationSet(args.val, args.convert)
    qmodel, history = train_qat(model, source, val, cfg, resolve_device(args.device), progress=True,
                                log=logging.getLogger(__name__))
    save_qat_checkpoint(out.with_suffix(".qat.pt"), qmodel, history)
    print(f"wrote {out.with_suffix('.qat.pt')} (reuse it with --qat-checkpoint)")
    return qmodel, None


def run(args) -> int:
    from .formats import FORMATS, ExportRequest, format_validation

    fmt = FORMATS[args.format]
    fmt.ensure_available()
    fixed_shape = parse_shape(args.fixed_shape) if args.fixed_shape else None
    if args.uint8_io and not fmt.uint8_io:
        raise ElsrError(f"--uint8-io is for --format tflite, not {fmt.name}",
                        fix="ONNX and ORT models take float32 input")
    if args.opset is not None and (args.int8 or not fmt.opset):
        raise ElsrError("--opset applies to FP32 ONNX and ORT exports only", fix="leave --opset out")
    if not args.int8 and (args.qat_checkpoint or args.train):
        raise ElsrError("--qat-checkpoint and --train are for INT8 exports", fix="add --int8")
    model, ckpt = load_model(args.weights, args.scale)
    out = args.out or fmt.default_name(model.scale, args.int8, args.uint8_io)
    if out.suffix.lower() != fmt.suffix:
        raise ElsrError(f"--format {fmt.name} writes {fmt.suffix} files", path=out, fix=f"name the output *{fmt.suffix}")
    outputs = [out, *fmt.companions(out), *([out.with_suffix(".qat.pt")] if args.int8 and not args.qat_checkpoint
                                            else [])]
    existing = [p for p in outputs if p.exists()]
    if existing and not args.overwrite:
        raise ElsrError("output exists", path=existing[0], fix="pass --overwrite")
    images = list_images(args.check_images)[:MAX_CHECK_IMAGES] if args.check_images else []
    for data in args.validate:
        list_images(data)  # a missing folder fails now, not after QAT
    qmodel, params = _qat_model(args, model, out) if args.int8 else (None, None)
    request = ExportRequest(model, ckpt.get("meta") or {}, qmodel, params, fixed_shape, args.uint8_io, args.opset,
                            images)
    exported = fmt.export(request, out)
    size = out.stat().st_size / 1024
    print(f"wrote {out} ({size:.1f} KiB, {fmt.name}, {request.precision}, x{model.scale})"
          + "".join(f", {p}" for p in exported.files[1:]))
    for line in exported.lines:
        print(line)
    try:
        for line in fmt.check(request, out):
            print(line)
    except ElsrError as exc:
        for path in exported.files:
            path.unlink(missing_ok=True)
        raise ElsrError(f"{exc.problem}; the file was removed", path=out, fix=exc.fix) from exc
    for data in args.validate:
        print(format_validation(out, fmt.validate(out, model, data, args.convert)))
    print(f"benchmark it: python -m benchmarks --models {out} --backends {fmt.backend} --threads 2")
    return 0
