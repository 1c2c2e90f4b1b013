"""Runners: the same pixels as export.runtime, precision from metadata checked against the graph."""

import numpy as np
import pytest

import torch

from benchmarks.runners import OrtRunner, TorchRunner, elsr_config
from elsr.errors import ElsrError
from elsr.model import ModelConfig
from export.runtime import load_upscaler
from tests.helpers import smooth_image


def test_upscale_matches_the_runtime(models, rng):
    lr = smooth_image(rng, 20, 28)
    for path, runner in ((models.fp32, OrtRunner(models.fp32, 1)), (models.weights, TorchRunner(models.weights, 1))):
        expected = load_upscaler(path, device="cpu")(lr)
        diff = np.abs(runner.upscale(lr).astype(int) - expected.astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.01
        runner.close()


def test_ort_session_settings(models):
    runner = OrtRunner(models.fp32, 1)
    options = runner.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert runner.info.config == ModelConfig(scale=4) and runner.info.params == 3469


def test_precision_from_graph_when_metadata_disagrees(models):
    info = OrtRunner(models.ptq_like, 1).info
    assert info.precision.startswith("int8")
    assert any("graph is quantized" in note for note in info.notes)


def test_broken_and_missing_files(models):
    with pytest.raises(ElsrError, match="cannot load"):
        OrtRunner(models.broken, 1)
    with pytest.raises(ElsrError, match="no such model file"):
        OrtRunner(models.missing, 1)


def test_elsr_config_from_parameter_count():
    assert elsr_config(4, 3469) == ModelConfig(scale=4)
    assert elsr_config(2, 3469) is None and elsr_config(5, 3469) is None


def test_torch_threads_are_restored(models):
    before = torch.get_num_threads()
    runner = TorchRunner(models.weights, 1, channels_last=True)
    with runner.active():
        assert torch.get_num_threads() == 1
        y = runner.forward(runner.prepare(np.zeros((1, 3, 8, 8), np.float32)))
    assert torch.get_num_threads() == before and tuple(y.shape) == (1, 3, 32, 32)
