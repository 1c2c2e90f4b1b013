"""Staged training: runs a schedule stage by stage, validates every epoch, resumes exactly.

The same code runs as one process or as several under ``torchrun`` (DistributedDataParallel,
plumbing in :mod:`elsr.train.distributed`): every rank draws the same global batches and trains on its
own equal share, rank 0 validates, logs and writes every file.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from elsr.data.datasets import FolderSource, HDF5Source, open_training_data, to_float
from elsr.data.metrics import METRIC_KEYS
from elsr.data.validation import ValidationSet
from elsr.errors import ElsrError
from elsr.io.files import atomic_path, refuse_overwriting_inputs, write_text
from elsr.model.checkpoint import read_checkpoint, save_checkpoint
from elsr.model.inference import resolve_device
from elsr.model.network import ELSR, ModelConfig, count_parameters, load_weights
from elsr.provenance import provenance
from elsr.train import distributed
from elsr.train.loop import run_epoch, validate
from elsr.train.losses import loss_function
from elsr.train.memory import check_batch_fits
from elsr.train.plots import plot_history
from elsr.train.precision import AMP_MODES, CHANNELS_LAST_MODES
from elsr.train.schedule import Schedule, Stage, load_schedule, lr_for_epoch, resolve_schedule_path, shorten
from elsr.version import __version__

log = logging.getLogger(__name__)

RUN_STATE = "last.pt"
FINAL_MODEL = "model.pt"
CSV_FIELDS = ["stage", "stage_name", "scale", "epoch", "global_epoch", "lr", "loss", *METRIC_KEYS,
              *(f"bicubic_{key}" for key in METRIC_KEYS), "seconds", "samples_per_s"]


@dataclass
class TrainConfig:
    """One training run; the schedule holds everything about the stages."""

    schedule: str | Path
    train: Path
    val: Path
    out: Path
    device: str = "auto"
    resume: bool = False
    overwrite: bool = False
    weights: Path | None = None   # start the first stage from these weights (x2 -> x4 transfer if needed)
    seed: int | None = None       # overrides the schedule's seed
    channels: int | None = None   # overrides the schedule's hidden channels (a wider or narrower ELSR)
    workers: int = 2              # DataLoader workers for HDF5 data
    threads: int = 0              # torch CPU threads (0: PyTorch's default)
    convert: bool = False         # convert greyscale / RGBA / 16-bit images instead of refusing them
    length: float = 1.0           # multiply every stage's epochs by this (below half an epoch: a share of one epoch)
    max_steps: int | None = None  # cap the whole run at this many training steps (a short trial)
    progress: bool = True
    amp: str = "off"              # mixed precision: off, bf16 (CUDA or CPU) or fp16 (CUDA, with a GradScaler)
    channels_last: str = "auto"   # NHWC activations: auto = on CUDA with --amp, on, off
    dist_timeout: float | None = None  # seconds before a silent peer ends a multi-process run (None: env/default)


def stage_dir(out: Path, index: int, stage: Stage) -> Path:
    return out / f"stage{index + 1}_{stage.name}"


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--amp`` on ``device`` (None: full float32)."""
    if mode not in AMP_MODES:
        raise ElsrError(f"unknown --amp {mode!r}", fix=f"use one of {', '.join(AMP_MODES)}")
    if mode == "off":
        return None
    if mode == "fp16" and device.type != "cuda":
        raise ElsrError("--amp fp16 needs a CUDA GPU", fix="use --amp bf16 on CPUs, or --amp off")
    if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ElsrError("this GPU has no bfloat16 support", fix="use --amp fp16")
    return torch.bfloat16 if mode == "bf16" else torch.float16


def schedule_digest(schedule: Schedule, *extra) -> str:
    """Digest of a schedule (after --length/--seed/--weights) and options that change the numbers."""
    text = json.dumps([schedule.to_dict(), *extra], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Trainer:
    """Runs the stages of a schedule; ``run()`` returns a summary of the final model."""

    def __init__(self, cfg: TrainConfig, ctx: distributed.Context = distributed.SINGLE) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.schedule: Schedule = load_schedule(cfg.schedule)
        if cfg.seed is not None:
            self.schedule.seed = cfg.seed
        if cfg.channels is not None:
            if cfg.channels < 1:
                raise ElsrError(f"--channels must be positive, got {cfg.channels}", fix="e.g. --channels 16")
            self.schedule.channels = cfg.channels
        if cfg.weights is not None:
            self.schedule.stages[0].init = str(cfg.weights)
        if not (cfg.length > 0 and math.isfinite(cfg.length)) or (cfg.max_steps is not None and cfg.max_steps < 1):
            shorten([], [], cfg.length, cfg.max_steps)  # the one place that words the refusal
        self.out = Path(cfg.out)
        self.device = distributed.device_for(ctx, resolve_device(cfg.device))
        self._check_batches()
        self.amp = amp_dtype(cfg.amp, self.device)
        if cfg.channels_last not in CHANNELS_LAST_MODES:
            raise ElsrError(f"unknown --channels-last {cfg.channels_last!r}",
                            fix=f"use one of {', '.join(CHANNELS_LAST_MODES)}")
        # NHWC feeds the tensor cores of cuDNN's mixed-precision convs; in float32 or on CPUs the
        # default layout is as fast for these 6-channel convs, so auto only turns it on with --amp.
        self.channels_last = cfg.channels_last == "on" or (
            cfg.channels_last == "auto" and self.device.type == "cuda" and self.amp is not None)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if not ctx.enabled:  # with several ranks, run() checks them together
            self._check_inits()
        self.history: list[dict] = []
        self.best: dict[str, float] = {}
        self.model: ELSR | None = None

    # ----------------------------------------------------------------- set-up
    def _check_batches(self) -> None:
        """Every stage's batch splits evenly over the ranks (the schedule's batch is the global one), and one
        rank's training step fits in memory."""
        for stage in self.schedule.stages:
            where = f"stage {stage.name!r}"
            batch = distributed.per_rank_batch(self.ctx, stage.batch_size, where)
            check_batch_fits(batch, stage.patch_size, stage.scale, self.device.type == "cpu", where,
                             resolve_schedule_path(self.cfg.schedule))

    def _check_inits(self) -> None:
        """The paths this rank reads exist: the training data everywhere, the rest on rank 0."""
        paths = [("--train", self.cfg.train)] + ([("--val", self.cfg.val)] if self.ctx.is_main else [])
        for name, path in paths:
            if not Path(path).exists():
                raise ElsrError(f"{name} path does not exist", path=path, fix="check the path")
        # the run's plots and checkpoints must not land among (or over) the images it reads
        refuse_overwriting_inputs([self.out], [self.cfg.train, self.cfg.val, self.cfg.weights],
                                  [self.cfg.train, self.cfg.val])
        if not self.ctx.is_main:  # only rank 0 reads starting weights; DDP gives them to the others
            return
        for stage in self.schedule.stages:
            path = stage.init.removeprefix("transfer:")
            if stage.init not in ("scratch", "previous", "transfer") and not Path(path).is_file():
                raise ElsrError(f"stage {stage.name!r} starts from {path}, which does not exist",
                                path=path, fix="fix the init path or use init: scratch")

    def _check_start_weights(self) -> None:
        """Every checkpoint a stage starts from is readable, an ELSR model and finite, before anything is written."""
        for stage in self.schedule.stages:
            if stage.init not in ("scratch", "previous", "transfer"):
                read_checkpoint(stage.init.removeprefix("transfer:"))

    def _load_state(self) -> dict | None:
        state_path = self.out / RUN_STATE
        if not state_path.exists():
            if self.cfg.resume:
                log.info("a new run in %s (nothing to resume there yet)", self.out)
            return None
        if not self.cfg.resume and not self.cfg.overwrite:
            raise ElsrError("a training run already exists here", path=self.out,
                            fix="pass --resume to continue it, --overwrite to start again, or another --out")
        if not self.cfg.resume:
            return None
        ckpt = read_checkpoint(state_path)
        state = ckpt.get("train_state")
        if not state:
            raise ElsrError("checkpoint holds no training state", path=state_path, fix="start again with --overwrite")
        state["model"] = ckpt.get("train_model") or ckpt["model"]
        return state

    def _check_same_schedule(self, state: dict | None) -> None:
        """A resumed run must go on with the schedule it was started with (after every option that changes it)."""
        if state and state["schedule"] != self.schedule.to_dict():
            raise ElsrError("the run was started with a different schedule", path=self.out / RUN_STATE,
                            fix="resume with the same schedule and --weights/--seed/--length/--max-steps, "
                                "or use a new --out")

    def _shorten(self, source: FolderSource | HDF5Source) -> None:
        """--length and --max-steps, now that the training data tells how long one pass over it is (every stage's
        patches counted, so that data no stage can use is refused before anything is written)."""
        stages = self.schedule.stages
        passes = [max(1, source.num_patches(stage.scale, stage.patch_size) // stage.batch_size) for stage in stages]
        iterations = [stage.iters_per_epoch or n for stage, n in zip(stages, passes)]
        shorten(self.schedule.stages, iterations, self.cfg.length, self.cfg.max_steps)

    def _build_model(self, stage: Stage) -> ELSR:
        config = ModelConfig(scale=stage.scale, channels=self.schedule.channels, prelu=self.schedule.prelu)
        return ELSR(config, reparam=self.schedule.reparam)

    def _save(self, path: Path, model: ELSR, meta: dict, **extra) -> None:
        """A checkpoint of the plain (folded) model, plus the training-time weights when they differ."""
        if model.reparam:
            extra["train_model"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_checkpoint(path, model.fold(), meta, **extra)

    def _new_model(self, index: int, stage: Stage) -> ELSR:
        """The stage's starting model: fresh (seeded), the previous stage's best, a transfer or a file."""
        torch.manual_seed(self.schedule.seed * 1000 + index)
        model = self._build_model(stage)
        if stage.init == "scratch":
            log.info("stage %s: starting from scratch", stage.name)
            return model
        if stage.init in ("previous", "transfer"):
            prev = self.schedule.stages[index - 1]
            source = stage_dir(self.out, index - 1, prev) / "best.pt"
        else:
            source = Path(stage.init.removeprefix("transfer:"))
        ckpt = read_checkpoint(source)
        src_scale = ModelConfig.from_dict(ckpt["arch"]).scale
        transfer = stage.transfers or (self.cfg.weights is not None and index == 0 and src_scale != stage.scale)
        if src_scale != stage.scale and not transfer:
            raise ElsrError(f"stage {stage.name!r} is x{stage.scale} but its init checkpoint is x{src_scale}",
                            path=source, fix=f"use init: transfer:{source}")
        log.info("stage %s: %s weights from %s", stage.name, "transferring" if transfer else "loading", source)
        weights = ckpt.get("train_model") if model.reparam and ckpt.get("train_model") else ckpt["model"]
        load_weights(model, weights, str(source), transfer=transfer)
        return model

    # --------------------------------------------------------------- the run
    def run(self) -> dict:
        """Train every stage; with several ranks a lost peer ends every rank with one clear line."""
        with distributed.guard(self.ctx):
            return self._run()

    def _setup(self) -> tuple[dict | None, FolderSource | HDF5Source, ValidationSet | None, dict]:
        """Everything that can fail on bad input, before the first step: run on every rank, and with
        no collective step inside (a rank that fails here must not leave the others mid-collective)."""
        if self.ctx.enabled:
            self._check_inits()
        state, val = None, None
        if self.ctx.is_main:  # rank 0 owns the run folder, decides about resuming and validates
            state = self._load_state()
            val = ValidationSet(self.cfg.val, self.cfg.convert)
        source = open_training_data(self.cfg.train, self.cfg.convert, self.cfg.workers,
                                    pin_memory=self.device.type == "cuda")
        self._shorten(source)
        self._check_same_schedule(state)
        if self.ctx.is_main:
            self._check_start_weights()
        if self.ctx.is_main:  # the inputs are good: only now is anything written
            self.out.mkdir(parents=True, exist_ok=True)
            for stale in self.out.rglob(".*.tmp"):  # left by a run killed in the middle of a write
                stale.unlink(missing_ok=True)
            write_text(self.out / "schedule.json", json.dumps(self.schedule.to_dict(), indent=2))
        fingerprint = {}
        if self.ctx.enabled:
            fingerprint = {"schedule and options": schedule_digest(self.schedule, self.cfg.amp, __version__),
                           "training data": source.fingerprint()}
        return state, source, val, fingerprint

    def _run(self) -> dict:
        state, source, val, fingerprint = distributed.run_together(self.ctx, self._setup)
        distributed.check_agreement(self.ctx, fingerprint)
        state = distributed.broadcast(self.ctx, state)  # rank 0's resume decision and state, on every rank
        start_stage, start_epoch = 0, 0
        if state:
            self.history, self.best = state["history"], state["best"]
            start_stage, start_epoch = state["stage"], state["epoch"]
            log.info("resuming at stage %d, epoch %d", start_stage + 1, start_epoch + 1)
        for index in range(start_stage, len(self.schedule.stages)):
            resume = state if (state and index == start_stage) else None
            self._run_stage(index, source, val, start_epoch if resume else 0, resume)
        summary = distributed.run_together(self.ctx, lambda: self._finish() if self.ctx.is_main else None)
        return distributed.broadcast(self.ctx, summary)

    def _stage_model(self, index: int, stage: Stage, first_epoch: int, resume: dict | None) -> ELSR:
        """The stage's starting model on rank 0; other ranks get it from DDP's broadcast."""
        if not self.ctx.is_main:
            torch.manual_seed(self.schedule.seed * 1000 + index)
            return self._build_model(stage)
        if resume is None or first_epoch == 0:
            return self._new_model(index, stage)
        model = self._build_model(stage)
        load_weights(model, resume["model"], str(self.out / RUN_STATE))
        return model

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp)

    def _run_stage(self, index: int, source: FolderSource | HDF5Source, val: ValidationSet | None,
                   first_epoch: int, resume: dict | None) -> None:
        stage = self.schedule.stages[index]
        n_stages = len(self.schedule.stages)
        ctx, main = self.ctx, self.ctx.is_main
        model = distributed.run_together(ctx, lambda: self._stage_model(index, stage, first_epoch, resume))
        model.to(self.device).train()
        self.model = model  # the stage's (training-time) model, for callers of the Trainer
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        net = distributed.wrap(ctx, model, self.device)  # DDP: rank 0's weights on every rank, averaged gradients
        optimizer = torch.optim.Adam(model.parameters(), lr=stage.lr, weight_decay=stage.weight_decay)
        scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        if resume is not None and first_epoch > 0:
            optimizer.load_state_dict(resume["optimizer"])
            if scaler is not None and resume.get("scaler"):
                scaler.load_state_dict(resume["scaler"])
        loss_fn = loss_function(stage.loss, stage.luma_weight).to(self.device)
        iters = stage.iters_per_epoch or max(1, source.num_patches(stage.scale, stage.patch_size) // stage.batch_size)
        share = distributed.per_rank_batch(ctx, stage.batch_size, f"stage {stage.name!r}")
        bicubic = val.bicubic_scores(stage.scale) if main else {}
        folder = stage_dir(self.out, index, stage)
        if main:
            per_rank = f" ({share} on each of {ctx.world_size} processes)" if ctx.enabled else ""
            loss_name = stage.loss.upper() + (f" ({stage.luma_weight:.0%} on luma)" if stage.luma_weight else "")
            log.info("stage %d/%d %s: x%d, %s, %dpx LR patches, batch %d%s, lr %.2g, %d epochs x %d iterations, "
                     "%d parameters; bicubic on validation: %.2f dB (Y)", index + 1, n_stages, stage.name,
                     stage.scale, loss_name, stage.patch_size, stage.batch_size, per_rank, stage.lr, stage.epochs,
                     iters, count_parameters(model.fold()), bicubic["psnr_y"])
        def step_loss(lr_batch: torch.Tensor, hr_batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # uint8 crosses from the loader to the device (4x less than float), converted there
            lr_batch = to_float(lr_batch.to(self.device, non_blocking=True))
            hr_batch = to_float(hr_batch.to(self.device, non_blocking=True))
            with self._autocast():
                pred = net(lr_batch)
            loss = loss_fn(pred.float(), hr_batch)
            return loss, distributed.mean(ctx, loss)  # every rank sees a NaN and stops together

        for epoch in range(first_epoch, stage.epochs):
            lr = lr_for_epoch(stage, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            started = time.perf_counter()
            batches = source.batches(stage.scale, stage.patch_size, stage.batch_size, iters,
                                     (self.schedule.seed, index, epoch), rank=ctx.rank,
                                     world_size=ctx.world_size, uint8=True)
            losses = run_epoch(batches, step_loss, optimizer, total=iters,
                               desc=f"{stage.name} {epoch + 1}/{stage.epochs}",
                               bad_loss=self._bad_loss(stage, epoch, folder), progress=self.cfg.progress and main,
                               scaler=scaler)
            seconds = time.perf_counter() - started
            if not main:
                continue
            metrics = validate(model, val, self.device)
            row = {"stage": index + 1, "stage_name": stage.name, "scale": stage.scale, "epoch": epoch + 1,
                   "global_epoch": len(self.history) + 1, "lr": lr, "loss": float(np.mean(losses)),
                   **metrics, **{f"bicubic_{k}": v for k, v in bicubic.items()},
                   "seconds": round(seconds, 2), "samples_per_s": round(iters * stage.batch_size / seconds, 1)}
            self.history.append(row)
            self._save_epoch(index, stage, epoch, model, optimizer, metrics, folder, scaler)
            log.info("stage %d/%d %s epoch %d/%d: lr %.2e loss %.5f | val %.2f dB Y (bicubic %+.2f) %.2f dB RGB, "
                     "SSIM-Y %.4f | %.1fs, %.0f samples/s", index + 1, n_stages, stage.name, epoch + 1,
                     stage.epochs, lr, row["loss"], metrics["psnr_y"], metrics["psnr_y"] - bicubic["psnr_y"],
                     metrics["psnr_rgb"], metrics["ssim_y"], seconds, row["samples_per_s"])

    def _bad_loss(self, stage: Stage, epoch: int, folder: Path):
        """The error that stops training when the loss is not finite (the checkpoints so far are kept)."""
        def error(value: float, step: int) -> ElsrError:
            return ElsrError(f"loss became {value} in stage {stage.name!r}, epoch {epoch + 1}, iteration {step + 1}",
                             path=self.out, fix=f"lower the stage's lr; the last good checkpoints are kept in {folder}")
        return error

    def _save_epoch(self, index: int, stage: Stage, epoch: int, model: ELSR, optimizer, metrics: dict,
                    folder: Path, scaler=None) -> None:
        """Best and last of the stage, then the run state, metrics.csv and plots (each atomic)."""
        meta = {"schedule": self.schedule.name, "stage": stage.name, "epoch": epoch + 1, "val": metrics,
                "val_data": str(self.cfg.val), **provenance()}
        if metrics["psnr_y"] > self.best.get(stage.name, -math.inf):
            self.best[stage.name] = metrics["psnr_y"]
            self._save(folder / "best.pt", model, meta)
        self._save(folder / "last.pt", model, meta)
        done = epoch + 1 == stage.epochs
        train_state = {"stage": index + 1 if done else index, "epoch": 0 if done else epoch + 1,
                       "optimizer": optimizer.state_dict(), "history": self.history, "best": self.best,
                       "schedule": self.schedule.to_dict()}
        if scaler is not None:
            train_state["scaler"] = scaler.state_dict()
        self._save(self.out / RUN_STATE, model, meta, train_state=train_state)
        self._write_csv()
        plot_history(self.history, self.out)

    def _write_csv(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.history)
        write_text(self.out / "metrics.csv", buffer.getvalue())

    def _finish(self) -> dict:
        index = len(self.schedule.stages) - 1
        last = self.schedule.stages[index]
        best_path = stage_dir(self.out, index, last) / "best.pt"
        ckpt = read_checkpoint(best_path)
        with atomic_path(self.out / FINAL_MODEL) as tmp:
            tmp.write_bytes(best_path.read_bytes())
        rows = [r for r in self.history if r["stage_name"] == last.name]
        best_row = max(rows, key=lambda r: r["psnr_y"])
        summary = {"model": str(self.out / FINAL_MODEL), "scale": last.scale, "schedule": self.schedule.name,
                   "stage": last.name, "epoch": ckpt["meta"].get("epoch"),
                   "val": {k: best_row[k] for k in METRIC_KEYS},
                   "bicubic": {k: best_row[f"bicubic_{k}"] for k in METRIC_KEYS},
                   "train_seconds": round(sum(r["seconds"] for r in self.history), 1)}
        summary["gain_y_db"] = round(summary["val"]["psnr_y"] - summary["bicubic"]["psnr_y"], 3)
        write_text(self.out / "summary.json", json.dumps(summary, indent=2))
        log.info("final model %s: %.2f dB Y on %s, bicubic %.2f dB (%+.2f dB)", summary["model"],
                 summary["val"]["psnr_y"], self.cfg.val, summary["bicubic"]["psnr_y"], summary["gain_y_db"])
        return summary


def train(cfg: TrainConfig) -> dict:
    """Run a whole schedule; see :class:`TrainConfig`.

    Under torchrun (``RANK``/``WORLD_SIZE`` set) every process calls this; they join one process
    group, train with DistributedDataParallel, and every rank returns rank 0's summary.
    """
    ctx = distributed.detect(timeout_s=cfg.dist_timeout)
    with distributed.session(ctx, distributed.device_for(ctx, resolve_device(cfg.device))):
        trainer = distributed.run_together(ctx, lambda: Trainer(cfg, ctx))
        return trainer.run()
