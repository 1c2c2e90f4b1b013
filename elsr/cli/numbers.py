"""Numeric options: one argparse type for every numeric flag of every command, so each is range-checked when the
command line is read, before any work (a NaN, an infinity, a negative memory budget: one line, exit code 2).

``type=number(int, 0)`` takes integers from 0 up; ``type=number(float, above=0)`` finite numbers above 0;
``high`` bounds it from above. Imports nothing heavy: the memory benchmarks' command lines use it too.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

MAX_THREADS = 1024      # a thread count beyond this is a typo (each thread costs a stack; PyTorch starts them all)
MAX_WORKERS = 128       # DataLoader worker processes
MAX_SEED = 2**32 - 1    # numpy's seeds are 32-bit


def _limits(kind: type, low: float | None, high: float | None, above: float | None) -> str:
    what = "an integer" if kind is int else "a number"
    if above is not None:
        return f"{what} above {above:g}" + (f" and at most {high:g}" if high is not None else "")
    if low is not None and high is not None:
        return f"{what} from {low:g} to {high:g}"
    if low is not None:
        return f"{what} of at least {low:g}"
    return f"{what} of at most {high:g}" if high is not None else what


def number(kind: type = int, low: float | None = None, high: float | None = None, *, above: float | None = None,
           also: tuple[int | float, ...] = ()) -> Callable[[str], int | float]:
    """An argparse ``type``: ``kind`` (int or float) parsed from the text, finite, at least ``low`` (or greater
    than ``above``) and at most ``high``, or one of the special values ``also`` (0 for "never", say); anything
    else is an ArgumentTypeError saying what is allowed."""
    limits = " or ".join([*(f"{v:g}" for v in also), _limits(kind, low, high, above)])

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {limits}, got {text!r}") from None
        if value in also:
            return value
        if (not math.isfinite(value) or (low is not None and value < low) or (above is not None and value <= above)
                or (high is not None and value > high)):
            raise argparse.ArgumentTypeError(f"must be {limits}, got {text!r}")
        return value

    parse.__name__ = kind.__name__   # argparse names the type in its own messages
    parse.limits = {"kind": kind, "low": low, "high": high, "above": above, "also": also}   # for the tests
    return parse


# The common kinds, shared by many flags.
threads = number(int, 0, MAX_THREADS)     # a thread count: 0 (the runtime's own choice) up to MAX_THREADS
count = number(int, 1)                    # how many of something that needs one at least: epochs, runs, a batch
workers = number(int, 0, MAX_WORKERS)     # DataLoader worker processes: 0 (in the training process) and up
