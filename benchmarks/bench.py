"""Run every planned row: build, time, measure memory; then quality, video and the paper comparison."""

from __future__ import annotations

import fnmatch
import logging
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from elsr.benchmarks.backends import BACKENDS, Backend, RowPlan, plan_rows
from elsr.benchmarks.config import VIDEO_OUTPUT, BenchConfig
from elsr.benchmarks.machine import Machine, peak_rss_bytes, reset_peak_rss
from elsr.benchmarks.paper import comparison, realtime_fraction
from elsr.benchmarks.quality import QualityCache
from elsr.benchmarks.readiness import readiness_rows
from elsr.benchmarks.reliability import assess, load_average
from elsr.benchmarks.results import BenchResult, Row
from elsr.benchmarks.timing import TURN_PAUSE_S, TURN_RUNS, Timed, in_turns
from elsr.benchmarks.video import run_video
from elsr.data.metrics import METRIC_KEYS
from elsr.errors import ElsrError
from elsr.model.network import macs_per_frame
from elsr.runtime.base import ModelInfo, Upscaler
from elsr.runtime.upscale import video_model_threads

log = logging.getLogger(__name__)


def failure(exc: Exception) -> str:
    """'failed: <one line>' for any exception a backend raises."""
    if isinstance(exc, ElsrError):
        return f"failed: {exc.one_line()}"
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"failed: {type(exc).__name__}: {text}" if text else f"failed: {type(exc).__name__}"


def describe(row: Row, info: ModelInfo) -> None:
    row.precision, row.params, row.size_bytes = info.precision, info.params, info.size_bytes
    row.notes += info.notes
    if info.precision == "fp16":
        row.notes.append("PSNR not computed: elsr eval runs FP32 only")


def eval_target(plan: RowPlan, upscaler: Upscaler, info: ModelInfo) -> tuple[Path, str] | None:
    """The (file, device) whose `elsr eval` scores are this row's quality; None where eval cannot run it (FP16)."""
    return None if info.precision == "fp16" else (plan.model, upscaler.device)


def fill_rates(row: Row, info: ModelInfo, machine: Machine, size: tuple[int, int]) -> None:
    """fps, real-time fraction, GMAC/s and its fraction of the nominal peak."""
    row.fps = 1000.0 / row.median_ms
    row.realtime_fraction = realtime_fraction(row.fps)
    if info.config is not None:
        row.gmacs_per_frame = macs_per_frame(info.config, *size) / 1e9
        row.gmac_per_s = row.gmacs_per_frame * row.fps
        row.peak_gmac_per_s = machine.peak_gmacs(row.threads, row.precision)
        if row.peak_gmac_per_s:
            row.peak_fraction = row.gmac_per_s / row.peak_gmac_per_s


@dataclass
class Measured:
    row: Row
    loaded: bool                                  # the backend could load the model
    eval_target: tuple[Path, str] | None = None   # the (file, device) `elsr eval` scores for this row


def new_row(plan: RowPlan, cfg: BenchConfig) -> Row:
    backend = plan.backend
    return Row(plan.name, backend.name if backend else "?", backend.kind if backend else "?",
               str(plan.model) if plan.model else None, status=plan.status or "ok", threads=plan.threads,
               input_shape="1x3x{}x{}".format(*cfg.size))


def bench_input(cfg: BenchConfig) -> np.ndarray:
    return np.random.default_rng(0).random((1, 3, *cfg.size), dtype=np.float32)


def load_alone(plan: RowPlan, cfg: BenchConfig) -> Measured:
    """A row's model loaded, described, warmed up and its memory measured with no other model loaded; then
    released. Never raises for the model: a model its backend cannot load is a row with the reason."""
    row = new_row(plan, cfg)
    if plan.status:
        return Measured(row, False)
    reset_peak_rss()
    try:
        runner: Upscaler = plan.backend.build(plan.model, plan.threads)
        info = runner.info()
    except Exception as exc:  # noqa: BLE001 - a broken model or backend becomes a row with its reason
        row.status, row.threads = failure(exc), None
        return Measured(row, False)
    try:
        describe(row, info)
        with runner.active():
            prepared = runner.prepare(bench_input(cfg))
            for _ in range(max(cfg.warmup, 1)):
                runner.forward(prepared)
        row.peak_rss_bytes, row.gpu_peak_bytes = peak_rss_bytes(), runner.gpu_peak_bytes()
    except Exception as exc:  # noqa: BLE001
        row.status = failure(exc)
    finally:
        runner.close()
    return Measured(row, True, eval_target(plan, runner, info))


def time_in_turns(plans: list[RowPlan], measured: list[Measured | None], cfg: BenchConfig,
                  machine: Machine) -> None:
    """Time the rows that loaded alone side by side (``in_turns``), each with a fresh load of its model."""
    rows = [(plan, item.row) for plan, item in zip(plans, measured) if item and item.loaded and item.row.ok]
    runners, entries, timed = [], [], []
    for plan, row in rows:
        runner = None
        try:
            runner = plan.backend.build(plan.model, plan.threads)
            info = runner.info()
            with runner.active():
                prepared = runner.prepare(bench_input(cfg))
        except Exception as exc:  # noqa: BLE001
            row.status = failure(exc)
            if runner is not None:
                runner.close()
            continue
        runners.append(runner)
        entries.append(Timed(lambda r=runner, x=prepared: r.forward(x), plan.backend.timer, runner.active))
        timed.append((row, info))
    log.info("timing %d row(s) in turns of %d runs", len(entries), TURN_RUNS)
    load_before = load_average()
    try:
        in_turns(entries, cfg.warmup, cfg.runs)
    finally:
        for runner in runners:
            runner.close()
    load_after = load_average()
    for (row, info), entry in zip(timed, entries):
        row.load_before, row.load_after = load_before, load_after
        if entry.error is not None:
            row.status = failure(entry.error)
            continue
        latency = entry.latency()
        row.median_ms, row.p90_ms, row.min_ms = latency.median_ms, latency.p90_ms, latency.min_ms
        row.mean_ms, row.runs, row.cpu_ms = latency.mean_ms, latency.runs, latency.cpu_ms
        fill_rates(row, info, machine, cfg.size)


def isolated(plan: RowPlan) -> bool:
    """Whether the row is measured in a process of its own backend and thread count."""
    return plan.backend is not None and plan.backend.own_process and not plan.status


def measure_rows(plans: list[RowPlan], cfg: BenchConfig, machine: Machine) -> list[Measured | None]:
    """Rows of one process: each model loaded alone first (its load, warm-up and memory), then all that loaded
    timed in turns. A model its backend cannot load at one thread count is not tried at the others (None)."""
    broken: set[tuple[str, Path | None]] = set()
    measured: list[Measured | None] = []
    for plan in plans:
        if plan.backend and not plan.status and (plan.backend.name, plan.model) in broken:
            measured.append(None)
            continue
        item = load_alone(plan, cfg)
        if not item.loaded and not plan.status:
            broken.add((item.row.backend, plan.model))
        log.info("%s (threads %s): loaded alone: %s", item.row.name, item.row.threads or "-", item.row.status)
        measured.append(item)
    time_in_turns(plans, measured, cfg, machine)
    return measured


def _measure_by_name(backend: str, models: list[Path], threads: int | None, cfg: BenchConfig,
                     machine: Machine) -> list[Measured | None]:
    """measure_rows in a child process: the plans rebuilt from the backend's name (the table holds functions)."""
    table_row = next(b for b in BACKENDS if b.name == backend)
    return measure_rows([RowPlan(table_row, model, threads) for model in models], cfg, machine)


def measure_rows_in_own_process(plans: list[RowPlan], cfg: BenchConfig, machine: Machine) -> list[Measured | None]:
    """measure_rows in a fresh process (spawned: nothing of this one's runtimes carried over) for rows of one
    backend and one thread count."""
    backend, threads = plans[0].backend, plans[0].threads
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        try:
            return pool.apply(_measure_by_name, (backend.name, [p.model for p in plans], threads, cfg, machine))
        except Exception as exc:  # noqa: BLE001 - a child that dies or cannot send its rows back gives rows too
            rows = [new_row(p, cfg) for p in plans]
            for row in rows:
                row.status = failure(exc)
            return [Measured(row, False) for row in rows]


def measure_row(plan: RowPlan, cfg: BenchConfig, machine: Machine) -> Measured:
    """One row, in this process or (a backend that needs it) in its own."""
    return (measure_rows_in_own_process if isolated(plan) else measure_rows)([plan], cfg, machine)[0]


def process_groups(plans: list[RowPlan]) -> list[list[int]]:
    """The plans' indices by the process that measures them: this one for most backends; one of its own for each
    (backend, thread count) whose backend needs it (its thread count is fixed once a model is loaded)."""
    groups: dict[tuple, list[int]] = {}
    for i, plan in enumerate(plans):
        groups.setdefault((plan.backend.name, plan.threads) if isolated(plan) else (), []).append(i)
    return list(groups.values())


def add_quality(measured: list[Measured], cache: QualityCache) -> Row | None:
    """PSNR/SSIM of every ok row from `elsr eval`'s means; returns the bicubic reference row."""
    for item in measured:
        row, target = item.row, item.eval_target
        if not row.ok or target is None:
            continue
        try:
            scores = cache.scores(*target)
        except ElsrError as exc:
            row.notes.append(f"PSNR not computed: {exc.one_line()}")
            continue
        for key in METRIC_KEYS:
            setattr(row, key, scores[key])
        row.quality_source = cache.command(*target)
    if cache.bicubic is None:
        return None
    return Row("bicubic", "bicubic", "reference", None, precision="-", **cache.bicubic,
               quality_source="elsr eval (bicubic baseline)",
               notes=["MATLAB bicubic upscaling, the baseline of elsr eval; not timed"])


def pick_video_rows(plans: list[RowPlan], rows: list[Row], patterns: list[str]) -> list[tuple[RowPlan, Row]]:
    """The rows the video mode runs: every ok one matching ``patterns`` (row names or backend names, globs);
    by default one: the fastest INT8 model at the thread count `elsr upscale` gives a model beside the encoder
    (video_model_threads), as `elsr upscale` itself picks an INT8 model; without an INT8 row, the fastest row."""
    ok = [(plan, row) for plan, row in zip(plans, rows) if row.ok and plan.backend is not None]
    if patterns:
        return [(p, r) for p, r in ok if any(fnmatch.fnmatchcase(r.name, pattern)
                                             or fnmatch.fnmatchcase(r.backend, pattern) for pattern in patterns)]
    threads = video_model_threads()

    def rank(item: tuple[RowPlan, Row]) -> tuple[bool, bool, float]:
        row = item[1]
        return (row.precision or "").startswith("int8"), row.threads == threads, -(row.median_ms or float("inf"))

    return [max(ok, key=rank)] if ok else []


def video_mode(cfg: BenchConfig, plans: list[RowPlan], rows: list[Row]) -> list[dict]:
    """One record per (row, encoder settings): `elsr upscale`'s pipeline against the encoder alone."""
    picked = pick_video_rows(plans, rows, cfg.video_backends)
    if not picked:
        wanted = f"matching --video-backend {' '.join(cfg.video_backends)}" if cfg.video_backends else "that ran ok"
        return [{"source": str(cfg.video), "status": f"skipped: no row {wanted}"}]
    records = []
    for plan, row in picked:
        head = {"source": str(cfg.video), "backend": row.name, "threads": row.threads, "precision": row.precision}
        try:
            runner = plan.backend.build(plan.model, plan.threads)
        except Exception as exc:  # noqa: BLE001
            records.append({**head, "status": failure(exc)})
            continue
        try:
            with runner.active():
                for settings in cfg.video_encode:
                    log.info("video: %s with %s (%s threads), %s", cfg.video, row.name, row.threads or "-",
                             settings.resolve(Path(VIDEO_OUTPUT)).describe())
                    try:
                        records.append({**head, "status": "ok", **run_video(cfg.video, runner, settings,
                                                                            cfg.video_frames)})
                    except Exception as exc:  # noqa: BLE001
                        records.append({**head, "status": failure(exc)})
        finally:
            runner.close()
    return records


def settings(cfg: BenchConfig, memory_reset: bool) -> dict:
    return {"input_shape": "1x3x{}x{}".format(*cfg.size), "runs": cfg.runs, "warmup": cfg.warmup,
            "threads": cfg.threads, "backends": cfg.backends, "weights": str(cfg.weights) if cfg.weights else None,
            "models": [str(m) for m in cfg.models], "data": str(cfg.data) if cfg.data else None,
            "video": str(cfg.video) if cfg.video else None, "video_frames": cfg.video_frames,
            "command": cfg.command,
            "timing": "median/p90/min over the timed runs of one call on a pre-made input, after the warm-up; "
                      f"each row timed in turns with the other rows of its process (ExecuTorch: one process per "
                      f"thread count; the other backends: one for all), {TURN_RUNS} runs a turn after "
                      f"{TURN_PAUSE_S * 1000:.0f} ms idle (the previous row's threads stop spinning) and one untimed "
                      "run, the order rotating each round: side by side, so that load from other programs falls on "
                      "each row alike; "
                      "CUDA rows: CUDA events; CPU ms: the median CPU time of the process per run, all threads "
                      "together (on a shared machine it moves far less than wall time: compare rows by it)",
            "memory": "process RSS high-water mark (VmHWM) over the row's load and warm-up, reset before each, "
                      "with no other model loaded" if memory_reset else
                      "process RSS high-water mark since start (this system cannot reset it)"}


def run_benchmark(cfg: BenchConfig, table: tuple[Backend, ...] = BACKENDS) -> BenchResult:
    """Measure every row the backend table plans for ``cfg``; a failing row never stops the others. Rows that
    share a process are timed in turns (``time_in_turns``)."""
    machine, resettable = Machine.detect(), reset_peak_rss()
    plans = plan_rows(cfg.files, cfg.backends, cfg.threads, table)
    by_index: dict[int, Measured] = {}
    broken: set[tuple[str, Path | None]] = set()   # a model its backend cannot load: one row, not one per thread count
    for group in process_groups(plans):
        group = [i for i in group if not (plans[i].backend and (plans[i].backend.name, plans[i].model) in broken)]
        if not group:
            continue
        measure_group = measure_rows_in_own_process if isolated(plans[group[0]]) else measure_rows
        for i, item in zip(group, measure_group([plans[i] for i in group], cfg, machine)):
            if item is None:
                continue
            if not item.loaded and not plans[i].status:
                broken.add((item.row.backend, plans[i].model))
            by_index[i] = item
    plans = [plans[i] for i in sorted(by_index)]
    measured = [by_index[i] for i in sorted(by_index)]
    for item in measured:
        row = item.row
        timing = f", median {row.median_ms:.2f} ms" if row.median_ms is not None else ""
        log.info("%s (threads %s): %s%s", row.name, row.threads or "-", row.status, timing)
    rows = [item.row for item in measured]
    assess(rows, machine.usable_cores)
    if cfg.data is not None:
        log.info("quality: elsr eval on %s", cfg.data)
        bicubic = add_quality(measured, QualityCache(cfg.data, cfg.convert))
        rows += [bicubic] if bicubic else []
    video = video_mode(cfg, plans, rows) if cfg.video else None
    return BenchResult(machine, settings(cfg, resettable), rows, comparison(rows, cfg.data), video,
                       readiness_rows(cfg.models))
