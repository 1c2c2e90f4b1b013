"""Several training processes (torchrun + DistributedDataParallel), kept out of ``training.py``.

``torchrun`` (directly, under SLURM or under a Kubernetes operator) starts one process per device
and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; this module
reads them, joins the process group (NCCL on GPUs, gloo on CPUs) with a timeout, and offers the
few collective steps the trainer needs: rank-0 decisions broadcast to every rank, an agreement
check of a schedule + data fingerprint, errors raised on every rank together, and communication
failures (a rank crashed, was killed or stopped answering) turned into one clear line.
Gradient averaging is DistributedDataParallel's; launching is torchrun's.

Without those variables (or with ``WORLD_SIZE=1``) every helper is a no-op, so the single-process
trainer runs exactly as before.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import inspect
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from elsr.errors import ElsrError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1800.0   # PyTorch's own default for gloo; a dead peer is noticed at once anyway
TIMEOUT_ENV = "ELSR_DIST_TIMEOUT"
T = TypeVar("T")

# Messages of gloo / NCCL / the TCP store when a peer died or stopped answering.
_COMM_FAILURE = re.compile(r"gloo|nccl|connection (closed|reset|refused)|closed by peer|broken pipe|timed out|"
                           r"timeout|socket|watchdog|tcpstore", re.IGNORECASE)


@dataclass(frozen=True)
class Context:
    """This process's place in the job; ``world_size == 1`` means a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that validates, logs at INFO and writes files."""
        return self.rank == 0


SINGLE = Context()


def _env_int(environ, name: str, default: int) -> int:
    value = environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ElsrError(f"environment variable {name}={value!r} is not an integer",
                        fix="start several processes with torchrun, which sets it") from None


def detect(environ=None, timeout_s: float | None = None) -> Context:
    """The job layout from torchrun's environment variables (a single process when they are absent)."""
    environ = os.environ if environ is None else environ
    world = _env_int(environ, "WORLD_SIZE", 1)
    rank = _env_int(environ, "RANK", 0)
    local = _env_int(environ, "LOCAL_RANK", rank)
    if timeout_s is None:
        try:
            timeout_s = float(environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
        except ValueError:
            raise ElsrError(f"{TIMEOUT_ENV}={environ.get(TIMEOUT_ENV)!r} is not a number of seconds") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ElsrError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}",
                        fix="let torchrun set these variables")
    if timeout_s <= 0:
        raise ElsrError(f"the distributed timeout must be positive, got {timeout_s} s")
    return Context(rank=rank, world_size=world, local_rank=local, timeout_s=timeout_s)


def device_for(ctx: Context, device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` on GPUs (one process per GPU), else ``device``."""
    if device.type != "cuda" or not ctx.enabled:
        return device
    if ctx.local_rank >= torch.cuda.device_count():
        raise ElsrError(f"LOCAL_RANK {ctx.local_rank} but this node has {torch.cuda.device_count()} GPU(s)",
                        fix="start at most one process per GPU (torchrun --nproc_per_node <= GPUs)")
    return torch.device("cuda", ctx.local_rank)


class _RankPrefix(logging.Filter):
    def __init__(self, rank: int) -> None:
        super().__init__()
        self.prefix = f"[rank {rank}] "

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            record.msg = self.prefix + str(record.msg)
        return True


@contextlib.contextmanager
def session(ctx: Context, device: torch.device) -> Iterator[Context]:
    """Join the process group for the length of a run (nothing to do for a single process).

    Ranks other than 0 log warnings only, prefixed with their rank. The group is destroyed on the
    way out, also after an error.
    """
    if not ctx.enabled:
        yield ctx
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=ctx.timeout_s),
                                rank=ctx.rank, world_size=ctx.world_size)
    except (RuntimeError, ValueError) as exc:
        raise ElsrError(f"rank {ctx.rank}: could not join the other {ctx.world_size - 1} training process(es) "
                        f"with {backend}: {_first_line(exc)}",
                        fix="start the job with torchrun (MASTER_ADDR / MASTER_PORT must be reachable)") from exc
    root = logging.getLogger()
    level, prefix = root.level, _RankPrefix(ctx.rank)
    if not ctx.is_main:
        root.setLevel(logging.WARNING)
        for handler in root.handlers:
            handler.addFilter(prefix)
    log.info("distributed training: %d processes (%s), this is rank %d; timeout %.0f s",
             ctx.world_size, backend, ctx.rank, ctx.timeout_s)
    try:
        yield ctx
        # DistributedDataParallel wrappers live in reference cycles (their hooks refer back to them): freed
        # by the cyclic collector at some later time, which can be the interpreter's own teardown, with
        # their reducers' buckets and work handles, after the group is gone. Free them now, while it works.
        gc.collect()
        # All ranks tear down together: a rank that destroyed its group while another was still
        # finishing (rank 0 writes and evaluates the final model) could abort in gloo's teardown.
        barrier(ctx)
    finally:
        if not ctx.is_main:
            root.setLevel(level)
            for handler in root.handlers:
                handler.removeFilter(prefix)
        with contextlib.suppress(Exception):  # after a failed peer there may be nothing left to tell
            dist.destroy_process_group()


# ---------------------------------------------------------------- failures


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", text)  # drop "[.../pair.cc:553] "
    return text.split(" This is typically caused")[0][:300]  # and gloo's advice that follows


def is_comm_failure(exc: BaseException) -> bool:
    """An error of the communication layer: a peer crashed, was killed, or did not answer in time."""
    if isinstance(exc, dist.DistError):
        return True
    return isinstance(exc, RuntimeError) and bool(_COMM_FAILURE.search(str(exc)))


def comm_error(ctx: Context, exc: BaseException) -> ElsrError:
    """The one-line error for a lost peer."""
    reason = _first_line(exc)
    if re.search(r"timed out|timeout", reason, re.IGNORECASE):
        what = f"got no answer from another training process within the {ctx.timeout_s:.0f} s timeout"
    else:
        what = "lost contact with another training process (it crashed, was killed or its node failed)"
    return ElsrError(f"rank {ctx.rank}: {what}: {reason}",
                     fix="the failing rank's own output names the cause; continue with --resume, and give a slow "
                         f"but healthy job more time with --dist-timeout or {TIMEOUT_ENV}")


@contextlib.contextmanager
def guard(ctx: Context) -> Iterator[None]:
    """Turn communication failures into :func:`comm_error`; everything else passes through."""
    try:
        yield
    except ElsrError:
        raise
    except Exception as exc:
        if ctx.enabled and is_comm_failure(exc):
            raise comm_error(ctx, exc) from exc
        raise


# ---------------------------------------------------------------- collectives


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        with guard(ctx):
            dist.barrier()


def broadcast(ctx: Context, obj: T) -> T:
    """Rank 0's ``obj`` on every rank (pickled; meant for small things such as a resume state)."""
    if not ctx.enabled:
        return obj
    box = [obj if ctx.is_main else None]
    with guard(ctx):
        dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(ctx: Context, obj: Any) -> list:
    """Every rank's ``obj``, in rank order."""
    if not ctx.enabled:
        return [obj]
    out: list = [None] * ctx.world_size
    with guard(ctx):
        dist.all_gather_object(out, obj)
    return out


def run_together(ctx: Context, fn: Callable[[], T]) -> T:
    """Run ``fn`` on every rank; when it raises ElsrError on any rank, every rank raises it.

    A user error on one rank (a missing file on one node) thus ends the whole job with the same
    one line everywhere instead of leaving the other ranks waiting in their next collective.
    ``fn`` itself must not use collectives: a rank that fails early would pair its next one with them.
    """
    error: ElsrError | None = None
    result = None
    try:
        result = fn()
    except ElsrError as exc:
        if not ctx.enabled:
            raise
        error = exc
    outcomes = all_gather(ctx, None if error is None else error.one_line())
    for rank, line in enumerate(outcomes):
        if line is not None:
            if rank == ctx.rank and error is not None:
                raise ElsrError(f"rank {rank}: {line}") from error
            raise ElsrError(f"rank {rank}: {line}")
    return result


def check_agreement(ctx: Context, fingerprint: dict[str, str]) -> None:
    """Refuse to train when the ranks were given different schedules, options or data.

    ``fingerprint`` maps what was checked (``"schedule"``, ``"training data"``...) to a digest.
    """
    prints = all_gather(ctx, fingerprint)
    reference = prints[0]
    for rank, other in enumerate(prints[1:], start=1):
        differs = sorted(k for k in set(reference) | set(other) if reference.get(k) != other.get(k))
        if differs:
            raise ElsrError(f"the training processes disagree: rank {rank} has another {' and '.join(differs)} "
                            "than rank 0", fix="start every rank with the same --schedule, --seed, --length, "
                            "--weights, --amp and the same --train data (same files on every node)")


def mean(ctx: Context, value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over the ranks (a detached copy)."""
    value = value.detach().clone()
    if ctx.enabled:
        with guard(ctx):
            dist.all_reduce(value)
        value /= ctx.world_size
    return value


# ---------------------------------------------------------------- model and batches


def wrap(ctx: Context, model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` (``model`` itself for a single process).

    DDP broadcasts rank 0's parameters to every rank when it is built (``init_sync``), so only rank 0
    needs to read the stage's starting weights; buffers are constants here and are not re-broadcast
    on every forward pass.
    """
    if not ctx.enabled:
        return model
    ddp = nn.parallel.DistributedDataParallel
    # the option's name changed in torch 2.13; the old one still works there but warns
    no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters
               else "broadcast_buffers")
    with guard(ctx):
        return ddp(model, device_ids=[device.index] if device.type == "cuda" else None, **{no_sync: False})


def per_rank_batch(ctx: Context, global_batch: int, where: str) -> int:
    """The batch of one rank: the schedule's (global) batch divided by the number of processes."""
    if global_batch % ctx.world_size:
        raise ElsrError(f"{where}: batch_size {global_batch} is not divisible by the {ctx.world_size} training "
                        "processes (the schedule's batch size is the global one, split evenly over the ranks)",
                        fix="use a number of processes that divides every stage's batch_size, or change the "
                            "schedule's batch sizes")
    return global_batch // ctx.world_size
