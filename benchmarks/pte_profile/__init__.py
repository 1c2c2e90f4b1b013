"""Where an ExecuTorch program's time goes: each XNNPACK operator and each ExecuTorch kernel of one ``forward``
call, as ExecuTorch's own profiler records them (ETDump, read by ``executorch.devtools.Inspector``), the median
over the timed runs.

``python -m elsr.benchmarks.pte_profile MODEL.pte`` prints the table (and writes it into a Markdown file with
``--markdown``). Two rows are differences, per run: a partition's call less its operators (XNNPACK's work between
them: setting up shapes, its thread pool's hand-overs) and the whole call less its partitions' calls (ExecuTorch's:
taking the input, giving the output, views).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from elsr.model.network import DEFAULT_FRAME
from elsr.runtime.pte_model import TORCH_TYPES, PteModel, import_executorch

METHOD_EVENT = "Method::execute"       # one forward call, end to end
PARTITION_EVENT = "DELEGATE_CALL"      # one call into an XNNPACK partition (its operators and what lies between)
WRAPPER_EVENT = "OPERATOR_CALL"        # ExecuTorch's wrapper around each kernel call (its kernel is its own row)
EXECUTE_BLOCK = "Execute"              # the Inspector's block of the forward calls (not loading)


@dataclass
class PteProfileConfig:
    """A program, the threads it runs on, and the LR frame it is timed on."""

    model: Path
    threads: int = 2
    runs: int = 20
    warmup: int = 5
    size: tuple[int, int] = DEFAULT_FRAME   # (height, width) of the LR input


@dataclass
class ProfiledEvent:
    name: str              # XNNPACK's operator ("Convolution (NHWC, QC8) IGEMM #1"), or ExecuTorch's event
    in_xnnpack: bool       # an operator inside an XNNPACK partition (else ExecuTorch's own)
    median_ms: float


@dataclass
class PteProfile:
    model: Path
    threads: int
    size: tuple[int, int]
    runs: int
    method_ms: float                      # the whole forward call (median)
    partitions: int                       # XNNPACK partitions called per run
    between_ms: float                     # per run, the partitions' calls less their operators (median)
    outside_ms: float                     # per run, the call less its partitions' calls: ExecuTorch's part (median)
    events: list[ProfiledEvent] = field(default_factory=list)


def _events(frame, runs: int) -> tuple[float, int, float, float, list[ProfiledEvent]]:
    """(method, partitions, between, outside, events) from the Inspector's table, over each event's last ``runs``
    times (one per run, so the runs line up across events)."""
    method, partitions, in_xnnpack, events = np.zeros(runs), [], np.zeros(runs), []
    for row in frame.itertuples(index=False):
        if row.event_block_name != EXECUTE_BLOCK or len(row.raw) < runs or row.event_name == WRAPPER_EVENT:
            continue
        times = np.asarray(list(row.raw)[-runs:], dtype=np.float64)
        if row.event_name == METHOD_EVENT:
            method = times
        elif row.event_name == PARTITION_EVENT:
            partitions.append(times)
        else:
            events.append(ProfiledEvent(str(row.event_name), bool(row.is_delegated_op), float(np.median(times))))
            in_xnnpack += times if row.is_delegated_op else 0
    partition_calls = sum(partitions, np.zeros(runs))
    between, outside = np.median(partition_calls - in_xnnpack), np.median(method - partition_calls)
    return float(np.median(method)), len(partitions), float(between), float(outside), events


def profile_program(cfg: PteProfileConfig) -> PteProfile:
    """Run the program ``warmup + runs`` times under ExecuTorch's profiler; each event's median time."""
    program = PteModel(cfg.model, cfg.threads, profiled=True)
    batch, size = (1, cfg.size) if program.dynamic else program.batch_and_size   # a fixed program: its own shape
    x = torch.zeros(program.nchw_to_layout((batch, 3, *size)), dtype=TORCH_TYPES[program.input_dtype])
    for _ in range(cfg.warmup + cfg.runs):
        program.run(x)
    inspector = import_executorch("executorch.devtools").Inspector
    with tempfile.TemporaryDirectory() as folder:
        etdump, debug = Path(folder) / "profile.etdp", Path(folder) / "debug.bin"
        program.write_profile(etdump, debug)
        frame = inspector(etdump_path=str(etdump)).to_dataframe()
    method, partitions, between, outside, events = _events(frame, cfg.runs)
    return PteProfile(cfg.model, program.threads, size, cfg.runs, method, partitions, between, outside, events)


def profile_markdown(profile: PteProfile) -> str:
    """The profile as a Markdown table, with what it was measured on."""
    height, width = profile.size
    lines = [f"`{profile.model.name}`, one {height}x{width} frame, {profile.threads} thread(s), median of "
             f"{profile.runs} runs (ExecuTorch's profiler):", "",
             "| where | event | median ms | share of the call |", "|---|---|---:|---:|"]
    total = profile.method_ms or 1.0
    for event in profile.events:
        where = "XNNPACK" if event.in_xnnpack else "ExecuTorch"
        lines.append(f"| {where} | {event.name} | {event.median_ms:.3f} | {event.median_ms / total:.0%} |")
    between, outside = profile.between_ms, profile.outside_ms
    lines += [f"| XNNPACK | between its operators ({profile.partitions} partition call(s) less their operators) "
              f"| {between:.3f} | {between / total:.0%} |",
              f"| ExecuTorch | outside the partitions (the call less its partition calls: inputs, outputs, views) "
              f"| {outside:.3f} | {outside / total:.0%} |",
              f"| | **the forward call** | **{profile.method_ms:.3f}** | 100% |"]
    return "\n".join(lines)
