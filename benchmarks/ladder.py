"""The size ladder (``elsr ladder``): ELSR at several widths, each FP32 and INT8, exported to every runtime of
``RUNTIMES``, scored on test sets (PSNR/SSIM, Y and RGB) and timed at one thread count; one table and one
chart of quality against latency. A runtime that cannot run here, or an export that fails, is a cell with its
reason, never an aborted run."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from elsr.benchmarks.backends import BACKENDS, Backend, RowPlan
from elsr.benchmarks.bench import failure, measure_row
from elsr.benchmarks.config import DEFAULT_RUNS, DEFAULT_WARMUP, BenchConfig
from elsr.benchmarks.machine import Machine
from elsr.benchmarks.results import Row
from elsr.data.metrics import METRIC_KEYS
from elsr.data.validation import dataset_name
from elsr.errors import ElsrError
from elsr.export.exporter import ExportConfig, export_model
from elsr.export.formats import FORMATS
from elsr.io.images import list_images
from elsr.model.checkpoint import load_model
from elsr.model.network import DEFAULT_FRAME, PAPER_CHANNELS, ModelConfig, count_parameters, macs_per_frame
from elsr.runtime.evaluate import EvalConfig, evaluate

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class LadderRuntime:
    """One line of the chart and one latency column: a benchmark backend running one precision's file."""

    label: str
    backend: str              # a name in elsr.benchmarks.backends.BACKENDS
    precision: str            # fp32 | int8: whose quality its points carry
    format: str | None        # the export format that writes its file; None: the INT8 .onnx the size comes with
    io: str = "float"         # the file's I/O (the format's io_modes)

    @property
    def family(self) -> str:
        """The runtime without the precision: ORT, TFLite, ... (a latency column of the table)."""
        return self.label.split()[0]

    @property
    def key(self) -> str:
        """The name --runtimes takes: ort-fp32, tflite-int8, ..."""
        return self.label.lower().replace(" ", "-")

    @property
    def bench_backend(self) -> Backend:
        return next(b for b in BACKENDS if b.name == self.backend)


RUNTIMES: tuple[LadderRuntime, ...] = (
    LadderRuntime("ORT FP32", "ort-cpu", "fp32", "onnx"),
    LadderRuntime("ORT INT8", "ort-cpu", "int8", None),
    LadderRuntime("TFLite INT8", "tflite", "int8", "tflite", io="int8"),
    LadderRuntime("ExecuTorch FP32", "executorch", "fp32", "executorch"),
    LadderRuntime("ExecuTorch INT8", "executorch", "int8", "executorch"),
    LadderRuntime("CoreML INT8", "coreml", "int8", "coreml"),   # exported and checked here; runs on Apple platforms
)


@dataclass
class LadderSize:
    """One size: its FP32 checkpoint and the INT8 QDQ ONNX of its QAT (which carries the QAT weights and ranges,
    so every other INT8 file is exported from it)."""

    weights: Path
    int8: Path
    name: str = ""            # e.g. x4-c16; default: the checkpoint's name (its run folder's for a model.pt)


@dataclass
class LadderConfig:
    sizes: list[LadderSize]
    data: list[Path]                          # HR test folders (PSNR/SSIM, Y and RGB, FP32 and INT8)
    work: Path                                # where the exports are written
    convert: bool = False                     # passed to the evaluation for greyscale / RGBA / 16-bit images
    threads: int = 2
    runs: int = DEFAULT_RUNS
    warmup: int = DEFAULT_WARMUP
    frame: tuple[int, int] = DEFAULT_FRAME    # LR height x width of the timed frame
    runtimes: list[str] = field(default_factory=lambda: [r.key for r in RUNTIMES])   # keys of RUNTIMES
    progress: bool = True
    command: str = ""                         # the command line, for the report

    def __post_init__(self) -> None:
        unknown = sorted(set(self.runtimes) - {r.key for r in RUNTIMES})
        if unknown or not self.runtimes:
            raise ElsrError(f"unknown runtime {unknown[0]!r}" if unknown else "no runtime to time",
                            fix=f"use some of: {', '.join(r.key for r in RUNTIMES)}")
        if not self.sizes:
            raise ElsrError("no size to compare", fix="pass --sizes or --pair CKPT INT8_ONNX")
        if not self.data:
            raise ElsrError("no test images", fix="pass --data DIR [DIR ...] (e.g. Set5/HR Set14/HR)")
        for size in self.sizes:
            for path, what in ((size.weights, "FP32 checkpoint"), (size.int8, "INT8 ONNX")):
                if not Path(path).is_file():
                    raise ElsrError(f"no such {what}", path=path, fix="check the path (--pair CKPT INT8_ONNX)")
        for folder in self.data:
            list_images(folder)   # a missing or empty folder fails now, not after the exports
        if self.runs < 1 or self.warmup < 0 or self.threads < 1:
            raise ElsrError(f"runs must be >= 1, warmup >= 0 and threads >= 1 (got {self.runs}, {self.warmup}, "
                            f"{self.threads})")


@dataclass
class Timing:
    """One runtime's cell for one size: its file and latency, or why there is none."""

    file: str | None
    status: str = "ok"
    median_ms: float | None = None
    cpu_ms: float | None = None
    size_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def fps(self) -> float | None:
        return 1000.0 / self.median_ms if self.median_ms else None


@dataclass
class SizeResult:
    name: str
    channels: int
    scale: int
    params: int
    gmacs: float                                        # per timed frame
    files: dict[str, str]                               # precision -> the FP32 checkpoint / INT8 ONNX scored
    quality: dict[str, dict[str, dict[str, float]]]     # precision -> test set -> metric -> mean
    timings: dict[str, Timing] = field(default_factory=dict)   # runtime label -> cell

    @property
    def paper(self) -> bool:
        return self.channels == PAPER_CHANNELS


@dataclass
class LadderResult:
    machine: Machine
    settings: dict
    sizes: list[SizeResult]
    bicubic: dict[str, dict[str, float]]                # test set -> metric -> mean

    @property
    def data_names(self) -> list[str]:
        return list(self.bicubic)

    def to_dict(self) -> dict:
        return {"machine": self.machine.to_dict(), "settings": self.settings, "bicubic": self.bicubic,
                "sizes": [{**asdict(s), "timings": {k: {**asdict(t), "fps": t.fps} for k, t in s.timings.items()}}
                          for s in self.sizes]}


def size_name(size: LadderSize) -> str:
    """The size's name in the report: its own, else its checkpoint's (its run folder's for a model.pt)."""
    weights = Path(size.weights)
    return size.name or (weights.parent.name if weights.stem == "model" else weights.stem)


def score(model: Path, cfg: LadderConfig) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """(model's means, bicubic's means) per test set, as `elsr eval` reports them."""
    model_means, bicubic = {}, {}
    for folder in cfg.data:
        mean = evaluate(EvalConfig(model=model, data=folder, convert=cfg.convert, progress=False))["mean"]
        model_means[dataset_name(folder)] = {k: mean["model"][k] for k in METRIC_KEYS}
        bicubic[dataset_name(folder)] = {k: mean["bicubic"][k] for k in METRIC_KEYS}
    return model_means, bicubic


def export_for(runtime: LadderRuntime, size: LadderSize, config: ModelConfig, cfg: LadderConfig) -> Path:
    """The file ``runtime`` runs for ``size``: the INT8 ONNX given, or an export into ``cfg.work``."""
    if runtime.format is None:
        return size.int8
    fmt = FORMATS[runtime.format]
    int8 = runtime.precision == "int8"
    io = "" if runtime.io == "float" else f"_{runtime.io}io"
    out = cfg.work / f"{size_name(size)}_c{config.channels}_{runtime.precision}{io}{fmt.suffix}"
    export_model(ExportConfig(weights=size.weights, format=runtime.format, out=out, int8=int8,
                              qat_checkpoint=size.int8 if int8 else None, io=runtime.io, overwrite=True),
                 emit=log.debug)
    return out


def time_file(runtime: LadderRuntime, path: Path, cfg: LadderConfig, machine: Machine) -> Timing:
    """Latency of ``path`` on the runtime's backend at ``cfg.threads`` threads (in its own process where the
    backend needs one), as the benchmark measures it."""
    backend = runtime.bench_backend
    bench = BenchConfig(models=[path], size=cfg.frame, runs=cfg.runs, warmup=cfg.warmup, threads=[cfg.threads],
                        backends=[backend.name])
    plan = RowPlan(backend, path, cfg.threads)
    row: Row = measure_row(plan, bench, machine).row
    return Timing(str(path), row.status, row.median_ms, row.cpu_ms, row.size_bytes)


def runtime_cell(runtime: LadderRuntime, size: LadderSize, config: ModelConfig, cfg: LadderConfig,
                 machine: Machine) -> Timing:
    """Export and time one runtime's file for one size. A runtime that cannot run here still exports where its
    converter is installed (checked at export: "not timed: why"); else, and on a failure, the cell says why."""
    reason = runtime.bench_backend.unavailable()
    try:
        path = export_for(runtime, size, config, cfg)
    except Exception as exc:  # noqa: BLE001 - a format that fails is a cell with its reason
        return Timing(None, f"skipped: {reason}" if reason else f"export {failure(exc)}")
    if reason:   # "not run: ..." (Core ML off Apple platforms) or why the runtime is missing
        status = reason if reason.startswith("not run") else f"not timed: {reason}"
        return Timing(str(path), status, size_bytes=path.stat().st_size)
    return time_file(runtime, path, cfg, machine)


def measure_size(size: LadderSize, cfg: LadderConfig, machine: Machine,
                 done: Callable[[str], None]) -> tuple[SizeResult, dict[str, dict[str, float]]]:
    """Quality of the size's FP32 and INT8 models, then every runtime's cell; ``done`` after each step."""
    model, _ = load_model(size.weights)
    config, name = model.config, size_name(size)
    fp32, bicubic = score(size.weights, cfg)
    int8, _ = score(size.int8, cfg)
    done(f"{name}: quality")
    result = SizeResult(name, config.channels, config.scale, count_parameters(model),
                        macs_per_frame(config, *cfg.frame) / 1e9,
                        {"fp32": str(size.weights), "int8": str(size.int8)}, {"fp32": fp32, "int8": int8})
    for runtime in (r for r in RUNTIMES if r.key in cfg.runtimes):
        result.timings[runtime.label] = cell = runtime_cell(runtime, size, config, cfg, machine)
        log.info("%s %s: %s%s", name, runtime.label, cell.status,
                 f", median {cell.median_ms:.2f} ms" if cell.median_ms else "")
        done(f"{name}: {runtime.label}")
    return result, bicubic


def check_scales(sizes: list[LadderSize]) -> None:
    """Every size upscales by the same factor (a ladder compares widths, not scales)."""
    scales = {load_model(size.weights)[0].scale: size.weights for size in sizes}
    if len(scales) > 1:
        raise ElsrError("the sizes have different scales: " + ", ".join(f"x{s} ({p})" for s, p in scales.items()),
                        fix="compare models of one scale")


def run_ladder(cfg: LadderConfig) -> LadderResult:
    """Measure every size of ``cfg``, narrowest first."""
    check_scales(cfg.sizes)
    cfg.work.mkdir(parents=True, exist_ok=True)
    machine = Machine.detect()
    results, bicubic = [], {}
    with tqdm(total=len(cfg.sizes) * (1 + len(cfg.runtimes)), desc="ladder", unit="step", disable=not cfg.progress,
              dynamic_ncols=True) as bar:
        def done(text: str) -> None:
            bar.set_postfix_str(text)
            bar.update(1)

        for size in cfg.sizes:
            result, bicubic = measure_size(size, cfg, machine, done)
            results.append(result)
    results.sort(key=lambda r: r.channels)
    settings = {"threads": cfg.threads, "runs": cfg.runs, "warmup": cfg.warmup,
                "input_shape": "1x3x{}x{}".format(*cfg.frame), "data": [str(d) for d in cfg.data],
                "command": cfg.command}
    return LadderResult(machine, settings, results, bicubic)
