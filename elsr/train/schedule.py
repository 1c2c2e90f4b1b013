"""Training schedules: a list of stages, read from YAML and checked strictly."""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from elsr.data.metrics import luma_weight_problem
from elsr.errors import ElsrError
from elsr.io.safe_yaml import load_yaml
from elsr.model.network import MAX_CHANNELS, PAPER_CHANNELS, PRELU_MODES, SCALES
from elsr.train.losses import LOSSES

BUILTIN_DIR = Path(__file__).parent / "schedules"
SCHEDULERS = ("constant", "step", "multistep", "cosine")
INITS = ("scratch", "previous", "transfer")
MAX_LR = 1.0   # a learning rate above 1 moves Adam's steps beyond the size of ELSR's weights: it only diverges
STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # stage names become folder names (stage1_<name>)


@dataclass
class SchedulerConfig:
    """Learning-rate schedule of one stage; stepped once per epoch."""

    name: str = "constant"
    step_size: int = 1          # step: epochs between decays
    gamma: float = 0.5          # step / multistep: decay factor
    milestones: list[int] = field(default_factory=list)  # multistep: epochs at which to decay
    eta_min: float = 0.0        # cosine: final learning rate


@dataclass
class Stage:
    """One training stage."""

    name: str
    scale: int
    patch_size: int             # LR patch side in pixels (HR patch = patch_size * scale)
    batch_size: int
    loss: str                   # l1 | mse
    lr: float
    epochs: int
    iters_per_epoch: int = 0    # 0: one pass over the HDF5 patches (required for image folders)
    init: str = "previous"      # scratch | previous | transfer (x2 -> x4) | path to a checkpoint
    weight_decay: float = 0.0
    luma_weight: float = 0.0    # share of the loss on the BT.601 luma error (PSNR-Y's channel), the rest on RGB
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)

    @property
    def transfers(self) -> bool:
        """Starts from another scale's weights: every tensor but the tail conv is copied."""
        return self.init == "transfer" or self.init.startswith("transfer:")


@dataclass
class Schedule:
    """A whole run: the model's shape and its stages in order."""

    name: str
    stages: list[Stage]
    description: str = ""
    seed: int = 0
    channels: int = PAPER_CHANNELS
    prelu: str = "shared"
    reparam: bool = False       # train re-parameterised convs (elsr.model.reparam); checkpoints hold the folded model

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_type(value, annotation, where: str, source: str):
    """Check (and lightly coerce) ``value`` against a dataclass field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        for option in options:
            try:
                return _check_type(value, option, where, source)
            except ElsrError:
                continue
        raise ElsrError(f"{where} has the wrong type ({type(value).__name__})", path=source)
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ElsrError(f"{where} must be a list, got {type(value).__name__}", path=source)
        return [_check_type(v, item_type, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, where, source)
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is str and isinstance(value, str):
        return value
    if annotation is type(None) and value is None:
        return None
    raise ElsrError(f"{where} must be {getattr(annotation, '__name__', annotation)}, got {reprlib.repr(value)}",
                    path=source)


def _build(cls, data, where: str, source: str):
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ElsrError(f"{where} must be a mapping, got {type(data).__name__}", path=source)
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ElsrError(f"unknown key {unknown[0]!r} in {where}", path=source,
                        fix=f"allowed keys: {', '.join(known)}")
    missing = [n for n, f in known.items() if n not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ElsrError(f"{where} is missing {', '.join(missing)}", path=source)
    values = {k: _check_type(v, hints[k], f"{where}.{k}", source) for k, v in data.items()}
    return cls(**values)


def _validate(schedule: Schedule, source: str) -> None:
    def bad(where: str, problem: str) -> ElsrError:
        return ElsrError(f"{where}: {problem}", path=source)

    if not schedule.stages:
        raise bad("stages", "the schedule has no stages")
    if schedule.seed < 0:
        raise bad("seed", f"must be 0 or positive, got {schedule.seed}")
    if schedule.prelu not in PRELU_MODES:
        raise bad("prelu", f"must be one of {PRELU_MODES}")
    if not 1 <= schedule.channels <= MAX_CHANNELS:
        raise bad("channels", f"must be from 1 to {MAX_CHANNELS}, got {schedule.channels}")
    names = [s.name for s in schedule.stages]
    if len(set(names)) != len(names):
        raise bad("stages", "stage names must be unique")
    for i, stage in enumerate(schedule.stages):
        where = f"stage {stage.name!r}"
        if not STAGE_NAME.fullmatch(stage.name):
            raise bad(where, "a stage name must be letters, digits, '_', '-' or '.' (it names a folder)")
        if stage.scale not in SCALES:
            raise bad(where, f"scale must be one of {SCALES}, got {stage.scale}")
        for key in ("patch_size", "batch_size", "epochs"):
            if getattr(stage, key) <= 0:
                raise bad(where, f"{key} must be positive, got {getattr(stage, key)}")
        if stage.iters_per_epoch < 0:
            raise bad(where, "iters_per_epoch must be 0 (one pass) or positive")
        if stage.loss not in LOSSES:
            raise bad(where, f"loss must be one of {LOSSES}, got {stage.loss!r}")
        if not 0 < stage.lr <= MAX_LR:
            raise bad(where, f"lr must be above 0 and at most {MAX_LR:g}, got {stage.lr}")
        if problem := luma_weight_problem(stage.luma_weight):
            raise bad(where, f"luma_weight {problem}")
        if not 0 <= stage.weight_decay <= 1:
            raise bad(where, f"weight_decay must be from 0 to 1, got {stage.weight_decay}")
        sched = stage.scheduler
        if sched.name not in SCHEDULERS:
            raise bad(where, f"scheduler.name must be one of {SCHEDULERS}, got {sched.name!r}")
        if sched.step_size <= 0 or not 0 < sched.gamma <= 1 or not 0 <= sched.eta_min <= MAX_LR:
            raise bad(where, f"scheduler step_size must be positive, gamma (a decay factor) above 0 and at most 1, "
                             f"eta_min from 0 to {MAX_LR:g}")
        if any(m < 0 for m in sched.milestones) or sched.milestones != sorted(set(sched.milestones)):
            raise bad(where, f"scheduler.milestones must be increasing epochs (0 or more), got {sched.milestones}")
        if i == 0 and stage.init in ("previous", "transfer"):
            raise bad(where, f"the first stage cannot start from {stage.init!r}; use scratch or a checkpoint path")
        if i > 0 and stage.init == "previous" and schedule.stages[i - 1].scale != stage.scale:
            raise bad(where, f"scale changes from x{schedule.stages[i - 1].scale} to x{stage.scale}: "
                             "use init: transfer")
        if i > 0 and stage.init == "transfer" and schedule.stages[i - 1].scale == stage.scale:
            raise bad(where, "init: transfer needs a scale change; use init: previous")


def builtin_schedules() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def resolve_schedule_path(name_or_path: str | Path) -> Path:
    """A built-in schedule name (quick, seed, paper) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ElsrError("no such schedule file", path=path, fix=f"or use one of {builtin_schedules()}")
        return path
    builtin = BUILTIN_DIR / f"{name_or_path}.yaml"
    if not builtin.is_file():
        raise ElsrError(f"unknown schedule {str(name_or_path)!r}",
                        fix=f"use one of {', '.join(builtin_schedules())} or a YAML file path")
    return builtin


def parse_schedule(data, source: str = "<schedule>") -> Schedule:
    """Build and validate a Schedule from parsed YAML data."""
    if data is None:
        raise ElsrError("the schedule file is empty", path=source,
                        fix=f"write a mapping with name and stages, as in {BUILTIN_DIR / 'quick.yaml'}")
    schedule = _build(Schedule, data, "schedule", source)
    _validate(schedule, source)
    return schedule


def load_schedule(name_or_path: str | Path) -> Schedule:
    """Load a built-in or user schedule, with one-line errors for every mistake."""
    path = resolve_schedule_path(name_or_path)
    return parse_schedule(load_yaml(path), str(path))


def lr_for_epoch(stage: Stage, epoch: int) -> float:
    """Learning rate of ``stage`` in ``epoch`` (0-based): a pure function, so resume needs no state."""
    s = stage.scheduler
    if s.name == "constant":
        return stage.lr
    if s.name == "step":
        return stage.lr * s.gamma ** (epoch // s.step_size)
    if s.name == "multistep":
        return stage.lr * s.gamma ** sum(epoch >= m for m in s.milestones)
    return cosine_lr(stage.lr, s.eta_min, epoch, stage.epochs)


def cosine_lr(lr: float, eta_min: float, epoch: int, epochs: int) -> float:
    """Cosine decay: ``lr`` at epoch 0, ``eta_min`` at the last of ``epochs``."""
    return eta_min + (lr - eta_min) * 0.5 * (1 + math.cos(math.pi * epoch / max(1, epochs - 1)))


MIN_STEPS_PER_EPOCH = 50  # a shortened stage keeps at least this many steps between two validations


def shorten(stages: list[Stage], iterations: list[int], length: float = 1.0, max_steps: int | None = None) -> None:
    """Apply ``--length`` and ``--max-steps`` to the stages, in place. ``iterations``: each stage's iterations per
    epoch as it would run them (its ``iters_per_epoch``, or the steps of one pass over the HDF5 patches).

    ``length`` multiplies every stage's epochs (rounded, as before); a stage left with less than half an epoch
    keeps one epoch of that share of its iterations, so a short try is short. ``max_steps`` then caps the whole
    run at that many steps, shared among the stages by their length, each keeping at least one step and at
    least MIN_STEPS_PER_EPOCH steps per epoch where it can.
    """
    if not (length > 0 and math.isfinite(length)):
        raise ElsrError(f"--length must be positive, got {length}", fix="e.g. --length 0.1 for a short try")
    if max_steps is not None and max_steps < 1:
        raise ElsrError(f"--max-steps must be at least 1, got {max_steps}", fix="e.g. --max-steps 300")
    for stage, iters in zip(stages, iterations):
        if stage.epochs * length >= 0.5:
            stage.epochs = round(stage.epochs * length)
        else:
            stage.epochs, stage.iters_per_epoch = 1, max(1, round(stage.epochs * iters * length))
    total = sum(stage.epochs * (stage.iters_per_epoch or iters) for stage, iters in zip(stages, iterations))
    if max_steps is None or total <= max_steps:
        return
    for stage, iters in zip(stages, iterations):
        steps = max(1, max_steps * stage.epochs * (stage.iters_per_epoch or iters) // total)
        stage.epochs = min(stage.epochs, max(1, steps // MIN_STEPS_PER_EPOCH))
        stage.iters_per_epoch = max(1, steps // stage.epochs)
