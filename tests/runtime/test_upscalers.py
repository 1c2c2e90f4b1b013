"""The upscalers every command and benchmark row uses: the same pixels on every path, session settings,
precision from metadata checked against the graph, the architecture from a parameter count."""

import numpy as np
import pytest
import torch

from elsr.errors import ElsrError
from elsr.model.network import ModelConfig, config_from_parameters
from elsr.runtime.loaders import load_upscaler
from elsr.runtime.onnx_model import OnnxUpscaler
from elsr.runtime.pytorch_model import TorchUpscaler
from tests.helpers import smooth_image


def test_three_steps_give_the_pixels_of_a_call(models, rng):
    lr = smooth_image(rng, 20, 28)
    upscalers = (OnnxUpscaler(models.fp32, threads=1), TorchUpscaler(models.weights, threads=1, channels_last=True))
    for upscaler in upscalers:
        expected = load_upscaler(upscaler.path, device="cpu")(lr)
        x = lr.transpose(2, 0, 1)[None].astype(np.float32) / 255
        y = upscaler.fetch(upscaler.forward(upscaler.prepare(x)))
        got = np.clip(np.rint(y[0].transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
        diff = np.abs(got.astype(int) - expected.astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.01
        upscaler.close()


def test_ort_session_settings(models):
    upscaler = OnnxUpscaler(models.fp32, threads=1)
    options = upscaler.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    info = upscaler.info()
    assert info.config == ModelConfig(scale=4) and info.params == 3469 and info.precision == "fp32"


def test_precision_from_graph_when_metadata_disagrees(models):
    info = OnnxUpscaler(models.ptq_like).info()
    assert info.precision.startswith("int8")
    assert any("graph is quantized" in note for note in info.notes)


def test_broken_and_missing_files(models):
    with pytest.raises(ElsrError, match="cannot load"):
        OnnxUpscaler(models.broken)
    with pytest.raises(ElsrError, match="no such model file"):
        OnnxUpscaler(models.missing)


def test_architecture_from_parameter_count():
    assert config_from_parameters(4, 3469) == ModelConfig(scale=4)
    assert config_from_parameters(4, 3469 + 5, "channel") == ModelConfig(scale=4, prelu="channel")
    assert config_from_parameters(2, 3469) is None and config_from_parameters(5, 3469) is None


def test_torch_threads_are_restored(models):
    before = torch.get_num_threads()
    upscaler = TorchUpscaler(models.weights, threads=1, channels_last=True)
    with upscaler.active():
        assert torch.get_num_threads() == 1
        y = upscaler.forward(upscaler.prepare(np.zeros((1, 3, 8, 8), np.float32)))
    assert torch.get_num_threads() == before and tuple(y.shape) == (1, 3, 32, 32)
