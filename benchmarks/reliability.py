"""Whether a row's timing can be trusted: its own spread, the machine's load around it, and thread scaling.

A shared or busy machine makes latencies drift and spread; the report says so per row rather than printing
numbers that only look precise. The rules, each a reason of its own:

- spread: p90 / median above MAX_SPREAD (the timed runs disagree with each other);
- load: the 1-minute load average before or after the row above the usable cores by more than LOAD_MARGIN
  (other processes wanted the cores too; our own threads count once, so the margin allows for them);
- scaling: a row at more threads slower than the same model at fewer (a busy machine, or a model too small to
  split across threads): called out, since a user would otherwise pick the slower setting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from elsr.benchmarks.results import Row

MAX_SPREAD = 1.25      # p90 / median
LOAD_MARGIN = 0.5      # load average this far above the usable cores marks a row


def load_average() -> float | None:
    """The 1-minute load average, where the system has one."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class Verdict:
    reasons: tuple[str, ...]

    @property
    def reliable(self) -> bool:
        return not self.reasons

    def text(self) -> str:
        return "ok" if self.reliable else "unreliable: " + "; ".join(self.reasons)


def timing_reasons(row: Row, usable_cores: int) -> list[str]:
    """Why this row's own timing is doubtful (spread, load), or nothing."""
    reasons = []
    if row.median_ms and row.p90_ms and row.p90_ms / row.median_ms > MAX_SPREAD:
        reasons.append(f"spread p90/median {row.p90_ms / row.median_ms:.2f} > {MAX_SPREAD}")
    loads = [x for x in (row.load_before, row.load_after) if x is not None]
    if loads and max(loads) > usable_cores + LOAD_MARGIN:
        reasons.append(f"load average {max(loads):.1f} on {usable_cores} cores")
    return reasons


def slower_with_more_threads(rows: list[Row]) -> dict[int, str]:
    """Row index -> reason, for each timed row slower than the same backend and model at fewer threads."""
    found = {}
    for i, row in enumerate(rows):
        if not (row.ok and row.median_ms and row.threads):
            continue
        fewer = [r for r in rows if r.ok and r.median_ms and r.threads and r.threads < row.threads
                 and (r.name, r.precision) == (row.name, row.precision)]
        faster = min(fewer, key=lambda r: r.median_ms, default=None)
        if faster is not None and faster.median_ms < row.median_ms:
            found[i] = (f"slower at {row.threads} threads than at {faster.threads} "
                        f"({row.median_ms:.2f} vs {faster.median_ms:.2f} ms)")
    return found


def assess(rows: list[Row], usable_cores: int) -> None:
    """Set every timed row's ``reliability``: 'ok' or 'unreliable: <reasons>'."""
    scaling = slower_with_more_threads(rows)
    for i, row in enumerate(rows):
        if row.median_ms is None:
            continue
        reasons = timing_reasons(row, usable_cores) + ([scaling[i]] if i in scaling else [])
        row.reliability = Verdict(tuple(reasons)).text()


def reliability_lines(rows: list[Row], usable_cores: int) -> list[str]:
    """The notes under the table: how rows were judged, and a call-out when any is unreliable."""
    timed = [r for r in rows if r.reliability is not None]
    doubtful = [r for r in timed if r.reliability != "ok"]
    lines = [f"- Reliability: a row is marked unreliable when its p90/median exceeds {MAX_SPREAD}, when the 1-minute "
             f"load average before or after it exceeds the {usable_cores} usable cores by {LOAD_MARGIN}, or when "
             "it is slower than the same model at fewer threads."]
    if doubtful:
        loads = [x for r in timed for x in (r.load_before, r.load_after) if x is not None]
        load = f" (load average {min(loads):.1f} to {max(loads):.1f})" if loads else ""
        lines.append(f"- **{len(doubtful)} of {len(timed)} timed rows are unreliable{load}**: compare rows only as "
                     "ratios within this run, or rerun on a quiet machine.")
    return lines
