"""Quality is `elsr eval`'s numbers, computed once per model file; failures are remembered too."""

import pytest

from elsr.benchmarks.quality import QualityCache
from elsr.errors import ElsrError
from elsr.runtime.evaluate import EvalConfig, evaluate


def test_cache(models, monkeypatch):
    cache = QualityCache(models.hr)
    first = cache.scores(models.fp32)
    expected = evaluate(EvalConfig(model=models.fp32, data=models.hr, device="cpu", progress=False))["mean"]
    assert first == expected["model"] and cache.bicubic == expected["bicubic"]
    monkeypatch.setattr("elsr.benchmarks.quality.evaluate", lambda cfg: pytest.fail("evaluated twice"))
    assert cache.scores(models.fp32) is first
    assert cache.command(models.fp32) == f"elsr eval --model {models.fp32} --data {models.hr} --device cpu"


def test_errors(models):
    cache = QualityCache(models.hr)
    for _ in range(2):
        with pytest.raises(ElsrError, match="broken.onnx: is a text file"):
            cache.scores(models.broken)
