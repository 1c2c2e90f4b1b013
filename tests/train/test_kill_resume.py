"""A training run killed with SIGKILL at several moments and resumed each time ends exactly where an
uninterrupted run ends; at every moment, every file on disk is whole (atomic writes).

The kills land in different phases: during start-up or the first epochs, in the middle of an atomic write
(the moment a temporary file appears), and at the stage change (x2 -> x4 transfer). Their exact moments
come from a seeded random generator, so a failure can be replayed.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import cv2
import pytest
import torch

from elsr.model.checkpoint import read_checkpoint
from elsr.train.trainer import CSV_FIELDS
from tests.helpers import image_folder, tiny_schedule

SEED = 8
TIMING_FIELDS = {"seconds", "samples_per_s"}
POLL_S = 0.002


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "elsr", "train", *args, "--no-progress", "--threads", "1"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def metric_rows(out: Path) -> list[dict]:
    path = out / "metrics.csv"
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def temporary_files(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*.tmp")] if out.exists() else []


def wait_for(proc: subprocess.Popen, condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}:\n{proc.stdout.read()}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_S)


def kill(proc: subprocess.Popen) -> None:
    assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


def assert_every_file_whole(out: Path) -> int:
    """Every checkpoint loads, metrics.csv, schedule.json and the plots parse; returns the checkpoints read."""
    checkpoints = sorted(out.rglob("*.pt"))
    for path in checkpoints:
        read_checkpoint(path)
    rows = metric_rows(out)
    assert all(list(row) == CSV_FIELDS and None not in row.values() for row in rows), "metrics.csv is cut short"
    for name in ("schedule.json", "summary.json"):
        if (out / name).exists():
            json.loads((out / name).read_text())
    for plot in out.glob("*.png"):
        assert cv2.imread(str(plot)) is not None, f"{plot} is not a whole PNG"
    return len(checkpoints)


class Watcher(threading.Thread):
    """Reads every checkpoint of the run folder over and over while the run writes them."""

    def __init__(self, out: Path) -> None:
        super().__init__(daemon=True)
        self.out, self.stop, self.loads, self.failures = out, threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            for path in list(self.out.rglob("*.pt")) if self.out.exists() else []:
                try:
                    read_checkpoint(path)
                    self.loads += 1
                except Exception as exc:  # noqa: BLE001 - recorded, asserted at the end
                    self.failures.append(f"{path}: {exc}")
            self.stop.wait(0.02)


@pytest.fixture
def data(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    return image_folder(tmp_path / "train", rng, 3, (64, 80)), image_folder(tmp_path / "val", rng, 2, (48, 64))


def test_killed_three_times_and_resumed_ends_with_the_uninterrupted_weights(tmp_path, data):
    began = time.perf_counter()
    rng = random.Random(SEED)
    schedule = tiny_schedule(tmp_path / "kill.yaml", epochs=(3, 3), iters=40)
    common = ["--schedule", str(schedule), "--train", str(data[0]), "--val", str(data[1]), "--device", "cpu"]
    reference = start([*common, "--out", str(tmp_path / "ref")], tmp_path)  # runs beside the killed one

    out = tmp_path / "killed"
    watcher = Watcher(out)
    watcher.start()
    kills = [
        # (what to wait for: epochs in metrics.csv, at least one more than when the run started; then the moment)
        ("the first epoch under way", 0, "delay"),
        ("an atomic write after epoch 2", 2, "temporary file"),
        ("the change to stage 2 (x4 transfer)", 3, "delay"),
    ]
    moments = []
    try:
        for number, (what, epochs, how) in enumerate(kills):
            proc = start([*common, "--out", str(out), *(["--resume"] if number else [])], tmp_path)
            if epochs:
                wanted = max(epochs, len(metric_rows(out)) + 1)
                wait_for(proc, lambda: len(metric_rows(out)) >= wanted, what)
            else:
                wait_for(proc, lambda: (out / "schedule.json").exists(), what)
            if how == "delay":
                time.sleep(rng.uniform(0.0, 0.3))
            else:  # in the middle of an atomic write, if one can be caught within a second
                deadline = time.time() + rng.uniform(0.3, 1.0)
                while not temporary_files(out) and time.time() < deadline and proc.poll() is None:
                    time.sleep(POLL_S / 2)
            caught_writing = bool(temporary_files(out))
            kill(proc)
            moments.append((what, how, len(metric_rows(out)), caught_writing, round(time.perf_counter() - began, 1)))
            assert_every_file_whole(out)
            assert not (out / "model.pt").exists() or read_checkpoint(out / "model.pt")
        final = start([*common, "--out", str(out), "--resume"], tmp_path)
        log = final.communicate(timeout=300)[0]
        assert final.returncode == 0, log
    finally:
        watcher.stop.set()
        watcher.join(timeout=10)
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    reference.stdout.close()

    assert not watcher.failures, watcher.failures[:3]
    assert watcher.loads > 0
    assert "resuming at stage" in log
    assert_every_file_whole(out)
    assert not temporary_files(out), "stale temporary files were not cleaned up"

    ours, theirs = read_checkpoint(out / "model.pt")["model"], read_checkpoint(tmp_path / "ref" / "model.pt")["model"]
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), f"weights differ after kills at {moments}"
    strip = [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in metric_rows(out)]
    assert strip == [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in metric_rows(tmp_path / "ref")]
    assert len(strip) == 6
    assert time.perf_counter() - began < 120, "the kill/resume test should take well under a minute"
