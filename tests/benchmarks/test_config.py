"""Sizes, thread counts and the checks BenchConfig makes before anything runs."""

import pytest

from elsr.benchmarks.config import BenchConfig, parse_size, resolve_threads
from elsr.model.devices import usable_cores
from elsr.errors import ElsrError


def test_parse_size():
    assert parse_size("180x320") == (180, 320) and parse_size("24X32") == (24, 32)
    for bad in ("180", "0x10", "ax3", "1x2x3"):
        with pytest.raises(ElsrError, match="HEIGHTxWIDTH"):
            parse_size(bad)


def test_threads():
    cores = usable_cores()
    assert resolve_threads(None) == sorted({1, cores})
    assert resolve_threads([0, 1, cores]) == list(dict.fromkeys([cores, 1]))
    with pytest.raises(ElsrError):
        resolve_threads([-1])


def test_files_and_checks(models):
    cfg = BenchConfig(weights=models.weights, models=[models.fp32])
    assert cfg.files == [models.weights, models.fp32] and cfg.size == (180, 320) and cfg.runs == 30
    with pytest.raises(ElsrError, match="--runs"):
        BenchConfig(weights=models.weights, runs=0)
    with pytest.raises(ElsrError, match="no such video"):
        BenchConfig(weights=models.weights, video=models.missing)
