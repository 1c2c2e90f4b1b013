"""``elsr demo``, an application of every layer: train on built-in photos, quantize, export, benchmark, look.

The built-in data set is made from real photos bundled with scikit-image; two are held out.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from elsr.benchmarks.bench import run_benchmark  # noqa: E402
from elsr.benchmarks.config import BenchConfig  # noqa: E402
from elsr.benchmarks.report import markdown_table, notes, write_outputs  # noqa: E402
from elsr.cli.numbers import count, number  # noqa: E402
from elsr.cli.options import add_device, add_no_progress, default  # noqa: E402
from elsr.data.bicubic import downscale, upscale  # noqa: E402
from elsr.errors import ElsrError  # noqa: E402
from elsr.export.formats import FORMATS  # noqa: E402
from elsr.export.onnx_fp32 import export_onnx  # noqa: E402
from elsr.export.onnx_int8 import load_qat_source  # noqa: E402
from elsr.export.quantize_onnx import QuantizeConfig, quantize  # noqa: E402
from elsr.export.request import ExportRequest  # noqa: E402
from elsr.io.files import atomic_path, write_text  # noqa: E402
from elsr.io.images import mod_crop, read_image, write_image  # noqa: E402
from elsr.model.checkpoint import load_model  # noqa: E402
from elsr.quant.qat import QATConfig  # noqa: E402
from elsr.runtime.coreml_model import NOT_HERE, coreml_runs_here  # noqa: E402
from elsr.runtime.evaluate import EvalConfig, evaluate, format_table  # noqa: E402
from elsr.runtime.loaders import load_upscaler  # noqa: E402
from elsr.train.trainer import TrainConfig, train  # noqa: E402

log = logging.getLogger(__name__)

TRAIN_PHOTOS = ("astronaut", "rocket", "hubble_deep_field", "retina", "immunohistochemistry")
HELD_OUT_PHOTOS = ("coffee", "chelsea")


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    schedule: str = "quick"
    length: float = 1.0
    device: str = "auto"
    qat: QATConfig = field(default_factory=QATConfig)
    bench_runs: int = 20
    progress: bool = True


def builtin_dataset(folder: Path) -> tuple[Path, Path]:
    """Write scikit-image's bundled photos as PNG: a training folder and a held-out folder."""
    try:
        from skimage import data as photos
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ElsrError("scikit-image is not installed", fix="pip install scikit-image") from exc
    for split, names in (("train", TRAIN_PHOTOS), ("val", HELD_OUT_PHOTOS)):
        for name in names:
            path = folder / split / f"{name}.png"
            if not path.exists():
                write_image(path, np.ascontiguousarray(getattr(photos, name)()[:, :, :3]))
    return folder / "train", folder / "val"


def _zoom_box(hr: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the most detailed size x size window (largest gradient energy)."""
    grey = hr.mean(axis=2)
    energy = np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1]
    best, corner = -1.0, (0, 0)
    step = max(8, size // 4)
    for top in range(0, hr.shape[0] - size, step):
        for left in range(0, hr.shape[1] - size, step):
            value = energy[top: top + size, left: left + size].sum()
            if value > best:
                best, corner = value, (top, left)
    return corner


def comparison_figure(panels: dict[str, np.ndarray], scores: dict[str, str], path: Path) -> None:
    """A row of full images and a row of zoomed crops of the same detailed region."""
    hr = panels["ground truth"]
    size = max(48, min(hr.shape[:2]) // 4)
    top, left = _zoom_box(hr, size)
    fig, axes = plt.subplots(2, len(panels), figsize=(3.2 * len(panels), 6.6))
    for column, (title, image) in enumerate(panels.items()):
        axes[0, column].imshow(image)
        axes[0, column].add_patch(plt.Rectangle((left, top), size, size, fill=False, color="yellow", lw=1.5))
        axes[0, column].set_title(f"{title}\n{scores.get(title, '')}", fontsize=9)
        axes[1, column].imshow(image[top: top + size, left: left + size], interpolation="nearest")
        for row in (0, 1):
            axes[row, column].axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _comparisons(out: Path, val_dir: Path, results: dict[str, dict], upscalers: dict) -> list[Path]:
    """One side-by-side figure per held-out image: LR, bicubic, each model, ground truth."""
    figures = []
    for index, row in enumerate(results["ELSR FP32"]["images"]):
        scale = results["ELSR FP32"]["scale"]
        hr = mod_crop(read_image(val_dir / row["image"]), scale)
        lr = downscale(hr, scale)
        panels = {"LR (nearest)": np.repeat(np.repeat(lr, scale, 0), scale, 1), "bicubic": upscale(lr, scale),
                  **{name: run(lr) for name, run in upscalers.items()}, "ground truth": hr}
        scores = {"bicubic": f"{row['bicubic']['psnr_y']:.2f} dB",
                  **{name: f"{result['images'][index]['model']['psnr_y']:.2f} dB" for name, result in results.items()}}
        figure = out / f"compare_{Path(row['image']).stem}.png"
        comparison_figure(panels, scores, figure)
        figures.append(figure)
    return figures


MOBILE_FORMATS = {"ort": "ELSR INT8, ORT format", "tflite": "ELSR INT8, TFLite", "executorch": "ELSR INT8, ExecuTorch",
                  "coreml": "ELSR INT8, Core ML"}   # format -> the demo's label for its INT8 artifact


def export_mobile(model, meta: dict, qat_checkpoint: Path, out: Path) -> tuple[dict[str, Path], list[str]]:
    """The INT8 mobile artifacts whose packages are installed (ORT format; TFLite, ExecuTorch and Core ML with
    their extras), from the QAT checkpoint, each checked as its format's export is; a format that is missing or
    fails is a note, not the end of the demo."""
    request = ExportRequest(model=model, meta=meta, qmodel=load_qat_source(qat_checkpoint))
    written, notes = {}, []
    for name, label in MOBILE_FORMATS.items():
        fmt = FORMATS[name]
        path = out / fmt.default_name(model.scale, int8=True)
        try:
            fmt.ensure_available()
            fmt.export(request, path)
            fmt.check(request, path)
            written[label] = path
        except ElsrError as exc:
            notes.append(f"{name}: not exported ({exc.one_line()})")
            log.warning("demo: %s not exported: %s", name, exc.one_line())
    if FORMATS["coreml"].suffix in {p.suffix for p in written.values()} and not coreml_runs_here():
        notes.append(f"coreml: exported and checked as Linux allows (operators, I/O, weights read back); "
                     f"{NOT_HERE}, so it has no PSNR here and its benchmark row says so")
    return written, notes


def run_demo(cfg: DemoConfig) -> Path:
    """Train on the built-in photos, export FP32 ONNX, QAT to INT8, benchmark, write report.md."""
    started = time.perf_counter()
    out = Path(cfg.out)
    train_dir, val_dir = builtin_dataset(out / "data")
    stamp = lambda step: log.info("demo: %s (%.1f min so far)", step, (time.perf_counter() - started) / 60)  # noqa: E731
    summary = train(TrainConfig(schedule=cfg.schedule, train=train_dir, val=val_dir, out=out / "train",
                                device=cfg.device, resume=True, length=cfg.length, progress=cfg.progress))
    stamp("trained")
    model_path = out / "train" / "model.pt"
    model, ckpt = load_model(model_path)
    fp32_onnx = export_onnx(model, out / f"elsr_x{model.scale}.onnx", meta=ckpt["meta"], overwrite=True)
    int8_onnx = out / f"elsr_x{model.scale}_int8.onnx"
    quantize(QuantizeConfig(weights=model_path, out=int8_onnx, train=train_dir, val=val_dir, qat=cfg.qat,
                            device=cfg.device, overwrite=True, progress=cfg.progress))
    mobile, mobile_notes = export_mobile(model, ckpt["meta"], int8_onnx.with_suffix(".qat.pt"), out)
    stamp("exported and quantized")
    runnable = {name: path for name, path in mobile.items() if path.suffix != FORMATS["coreml"].suffix
                or coreml_runs_here()}
    models = {"ELSR FP32": model_path, "ELSR INT8": int8_onnx, **runnable}
    results = {name: evaluate(EvalConfig(model=path, data=val_dir, device=cfg.device, progress=False))
               for name, path in models.items()}
    write_text(out / "eval.json", json.dumps(results, indent=2))
    bench = run_benchmark(BenchConfig(weights=model_path, models=[fp32_onnx, int8_onnx, *mobile.values()],
                                      data=val_dir, runs=cfg.bench_runs))
    write_outputs(bench, out / "bench")
    stamp("benchmarked")
    upscalers = {name: load_upscaler(path, device=cfg.device) for name, path in models.items() if name not in mobile}
    figures = _comparisons(out, val_dir, results, upscalers)
    minutes = (time.perf_counter() - started) / 60
    report = out / "report.md"
    fp32, int8 = (results[name]["mean"]["model"] for name in ("ELSR FP32", "ELSR INT8"))
    bicubic = results["ELSR FP32"]["mean"]["bicubic"]
    write_text(report, "\n".join([
        "# ELSR demo report", "",
        f"Schedule `{cfg.schedule}` (length x{cfg.length}) on the built-in photos "
        f"({', '.join(TRAIN_PHOTOS)}), evaluated on the held-out {', '.join(HELD_OUT_PHOTOS)}; "
        f"x{model.scale}, PSNR/SSIM on Y (BT.601) with a {model.scale}-pixel border, MATLAB-bicubic LR inputs.", "",
        "| model | PSNR-Y | vs bicubic | SSIM-Y | file |", "|---|---:|---:|---:|---|",
        f"| bicubic | {bicubic['psnr_y']:.2f} | - | {bicubic['ssim_y']:.4f} | - |",
        f"| ELSR FP32 | {fp32['psnr_y']:.2f} | {fp32['psnr_y'] - bicubic['psnr_y']:+.2f} | {fp32['ssim_y']:.4f} | "
        f"`{model_path.relative_to(out)}`, `{fp32_onnx.name}` |",
        f"| ELSR INT8 (QAT) | {int8['psnr_y']:.2f} | {int8['psnr_y'] - bicubic['psnr_y']:+.2f} | {int8['ssim_y']:.4f} | "
        f"`{int8_onnx.name}` |",
        *[f"| {name} | {results[name]['mean']['model']['psnr_y']:.2f} | "
          f"{results[name]['mean']['model']['psnr_y'] - bicubic['psnr_y']:+.2f} | "
          f"{results[name]['mean']['model']['ssim_y']:.4f} | `{path.name}` |" for name, path in runnable.items()],
        *[f"| {name} | not run here | - | - | `{path.name}` |" for name, path in mobile.items() if name not in runnable],
        "",
        *[f"- {note}" for note in mobile_notes], "",
        "Per image (FP32):", "", format_table(results["ELSR FP32"]), "",
        f"Quantization details: `{int8_onnx.with_suffix('.report.md').name}`. Best training epoch: "
        f"{summary['gain_y_db']:+.2f} dB over bicubic. Wall time of this demo: {minutes:.1f} min.", "",
        "## Speed on this machine", "", markdown_table(bench.rows), "", *notes(bench), "",
        "![latency vs PSNR](bench/latency_vs_psnr.png)", "",
        "## Training curves", "", "![loss](train/loss.png)", "", "![psnr](train/psnr.png)", "",
        "## Comparisons (bottom row: zoom on the most detailed region)", "",
        *[f"![{f.stem}]({f.name})\n" for f in figures],
    ]))
    return report


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, default=default(DemoConfig, "out"),
                        help="output folder (default: %(default)s)")
    parser.add_argument("--schedule", default=default(DemoConfig, "schedule"),
                        help="schedule to train (default: %(default)s)")
    parser.add_argument("--length", type=number(float, above=0), default=default(DemoConfig, "length"),
                        help="multiply every stage's epochs (default: %(default)s)")
    parser.add_argument("--qat-epochs", type=count, default=QATConfig.epochs, help="QAT epochs (default: %(default)s)")
    parser.add_argument("--qat-iters", type=count, default=QATConfig.iters_per_epoch,
                        help="QAT iterations per epoch (default: %(default)s)")
    add_device(parser)
    add_no_progress(parser)


def run(args) -> int:
    qat = QATConfig(epochs=args.qat_epochs, iters_per_epoch=args.qat_iters)
    report = run_demo(DemoConfig(out=args.out, schedule=args.schedule, length=args.length, device=args.device,
                                 qat=qat, progress=not args.no_progress))
    out = report.parent
    print(f"demo finished: report {report}\n  models: {out / 'train' / 'model.pt'}, {out}/elsr_x*.onnx (FP32, INT8)"
          f"\n  curves: {out / 'train'}/loss.png, psnr.png; benchmark: {out / 'bench'}; pictures: {out}/compare_*.png")
    return 0
