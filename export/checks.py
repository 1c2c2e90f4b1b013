"""Every artifact is run in its own runtime before it is called done: parity with PyTorch (FP32), agreement
with the QAT fake-quant model (INT8), and PSNR on real images against ground truth and the FP32 model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from elsr.data.bicubic import downscale
from elsr.data.metrics import image_metrics, psnr
from elsr.data.validation import dataset_name
from elsr.errors import ElsrError
from elsr.export.onnx_fp32 import CHECK_SHAPES, MAX_CHECK_IMAGES, TOLERANCE, check_inputs, require_parity
from elsr.export.request import ExportRequest
from elsr.io.images import list_images, mod_crop, read_image
from elsr.model.inference import image_to_array, super_resolve
from elsr.model.network import ELSR
from elsr.runtime.loaders import load_upscaler

# An INT8 artifact must agree with the QAT fake-quant model it comes from. onnxruntime does to the grey level
# on 99.9% of pixels; XNNPACK's int8 LeakyRelu uses 8-bit fractional multipliers, which leaves about 97% within
# one level (PSNR about 53 dB against the fake-quant output). A wrong graph is far below these bounds.
INT8_MAX_LEVELS = 16
INT8_MIN_PSNR = 40.0


def _grid(x: np.ndarray) -> np.ndarray:
    return (np.round(x * 255) / 255).astype(np.float32)


def check_inputs_for(request: ExportRequest) -> tuple[list[str], list[np.ndarray]]:
    """(labels, NCHW float inputs): random inputs and real images, or crops of the fixed shape."""
    images = request.check_images[:MAX_CHECK_IMAGES]
    if request.fixed_shape is None:
        inputs = check_inputs(images)
        labels = ["random"] * len(CHECK_SHAPES) + [p.name for p in images]
    else:
        n, _, h, w = request.fixed_shape
        inputs = [np.random.default_rng(0).random(request.fixed_shape, dtype=np.float32)]
        labels = ["random"]
        for path in images:
            x = image_to_array(read_image(path, convert=True))
            if x.shape[2] >= h and x.shape[3] >= w:
                inputs.append(np.repeat(x[:, :, :h, :w], n, axis=0))
                labels.append(f"{path.name} (crop)")
    if request.pixel_io or request.int8:  # the INT8 input is the pixel grid; pixel I/O takes pixels
        inputs = [_grid(x) for x in inputs]
    return labels, inputs


def check_artifact(request: ExportRequest, path: Path) -> list[str]:
    """Run the artifact in its own runtime on the check inputs: FP32 against PyTorch (tolerance 1e-4, or half a
    grey level with uint8 output), INT8 against the QAT fake-quant model (grey levels). ElsrError if it fails."""
    upscaler = load_upscaler(path, request.model.scale, device="cpu")
    labels, inputs = check_inputs_for(request)
    lines = []
    if not request.int8:
        model = request.model.cpu().eval()
        errors = []
        for x in inputs:
            with torch.no_grad():
                ref = model(torch.from_numpy(x)).numpy()
            if request.pixel_io:
                ref = np.clip(ref, 0, 1)
            errors.append((tuple(x.shape), float(np.abs(upscaler.run_array(x) - ref).max())))
        for label, (shape, error) in zip(labels, errors):
            lines.append(f"parity {label} {'x'.join(map(str, shape))}: max abs error {error:.2e}")
        tol = 0.5 / 255 + TOLERANCE if request.pixel_io else TOLERANCE
        try:
            require_parity(errors, path, tol)
        except ElsrError as exc:
            raise ElsrError(exc.problem, path=path, fix="re-export; report it if it persists") from exc
        return lines
    qmodel = request.qmodel.cpu().eval()
    for label, x in zip(labels, inputs):
        with torch.no_grad():
            ref = qmodel(torch.from_numpy(x)).numpy()
        levels = np.abs(upscaler.run_array(x) - ref) * 255
        mse = float((levels.astype(np.float64) ** 2).mean())
        agreement = float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
        lines.append(f"int8 vs QAT fake-quant {label} {'x'.join(map(str, x.shape))}: "
                     f"{100 * float((levels < 1e-3).mean()):.2f}% identical, "
                     f"{100 * float((levels <= 1 + 1e-3).mean()):.2f}% within one level, max {levels.max():.0f} levels, "
                     f"PSNR {agreement:.1f} dB")
        if not (levels.max() <= INT8_MAX_LEVELS and agreement >= INT8_MIN_PSNR):
            raise ElsrError(f"the INT8 model does not reproduce its QAT model ({lines[-1]})", path=path,
                            fix="re-export; report it if it persists")
    return lines


def validate(path: Path, model: ELSR, data: Path, convert: bool = False, threads: int = 0) -> dict:
    """Run an artifact with its own runtime on the HR images of ``data`` (MATLAB-bicubic LR, ``elsr eval``'s
    protocol) and score it against ground truth and against the FP32 PyTorch model's output."""
    upscaler = load_upscaler(path, model.scale, device="cpu", threads=threads)
    scale = model.scale
    model = model.cpu().eval()
    ours, fp32, agree = [], [], []
    for image_path in list_images(data):
        hr = mod_crop(read_image(image_path, convert), scale)
        lr = downscale(hr, scale)
        sr, ref = upscaler(lr), super_resolve(model, lr)
        ours.append(image_metrics(sr, hr, scale))
        fp32.append(image_metrics(ref, hr, scale))
        agree.append(psnr(sr, ref, scale, y_channel=True))
    finite = [a for a in agree if np.isfinite(a)]
    result = {"data": str(data), "images": len(ours), "identical_images": len(agree) - len(finite),
              "psnr_y_vs_fp32": float(np.mean(finite)) if finite else float("inf")}
    for channel in ("y", "rgb"):
        mean, reference = (float(np.mean([m[f"psnr_{channel}"] for m in rows])) for rows in (ours, fp32))
        result.update({f"psnr_{channel}": mean, f"fp32_psnr_{channel}": reference,
                       f"delta_{channel}_db": mean - reference})
    return result


def format_validation(path: Path, result: dict) -> str:
    versus = ("identical to FP32" if not np.isfinite(result["psnr_y_vs_fp32"]) else
              f"{result['psnr_y_vs_fp32']:.2f} dB vs the FP32 output")
    return (f"validate {dataset_name(result['data'])} ({result['images']} images, {path.name}): "
            f"PSNR-Y {result['psnr_y']:.3f} dB ({result['delta_y_db']:+.3f} vs FP32 PyTorch "
            f"{result['fp32_psnr_y']:.3f}), "
            f"PSNR-RGB {result['psnr_rgb']:.3f} dB ({result['delta_rgb_db']:+.3f} vs {result['fp32_psnr_rgb']:.3f}); "
            f"{versus}")
