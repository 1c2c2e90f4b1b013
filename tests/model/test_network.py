import logging

import pytest
import torch

from elsr.errors import ElsrError
from elsr.model.network import ELSR, ModelConfig, count_parameters, load_weights, macs_per_frame


@pytest.mark.parametrize("scale, params", [(2, 1489), (3, 2314), (4, 3469)])
def test_parameter_count(scale, params):
    assert count_parameters(ELSR(ModelConfig(scale=scale))) == params


def test_per_channel_prelu_adds_five_slopes():
    assert count_parameters(ELSR(ModelConfig(scale=4, prelu="channel"))) == 3469 + 5


def test_layers_are_the_papers():
    model = ELSR(ModelConfig(scale=4))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 6, (3, 3)), (6, 6, (3, 3)), (6, 6, (3, 3)), (6, 48, (3, 3))]
    assert model.body_act.weight.numel() == 1
    assert isinstance(model.upsample, torch.nn.PixelShuffle) and model.upsample.upscale_factor == 4


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("height, width", [(1, 1), (17, 23), (180, 320)])
def test_output_shape_any_size(scale, height, width):
    out = ELSR(ModelConfig(scale=scale))(torch.rand(2, 3, height, width))
    assert out.shape == (2, 3, height * scale, width * scale)


def test_residual_block_has_a_skip():
    model = ELSR(ModelConfig(scale=2))
    with torch.no_grad():
        model.body_conv2.weight.zero_()
        model.body_conv2.bias.zero_()
    x = torch.rand(1, 3, 8, 8)
    expected = model.upsample(model.tail(model.head(x)))
    torch.testing.assert_close(model(x), expected)


def test_macs_per_180x320_frame():
    assert macs_per_frame(ModelConfig(scale=4), 180, 320) == pytest.approx(0.196e9, rel=0.005)


def test_bad_config():
    with pytest.raises(ElsrError, match="scale"):
        ModelConfig(scale=5)
    with pytest.raises(ElsrError, match="prelu"):
        ModelConfig(prelu="relu")


def test_transfer_x2_to_x4_keeps_all_but_tail(caplog):
    x2 = ELSR(ModelConfig(scale=2))
    torch.manual_seed(1)
    x4 = ELSR(ModelConfig(scale=4))
    tail_before = x4.tail.weight.clone()
    with caplog.at_level(logging.INFO, logger="elsr.model.network"):
        load_weights(x4, x2.state_dict(), "x2.pt", transfer=True)
    for name, tensor in x2.state_dict().items():
        if not name.startswith("tail"):
            torch.testing.assert_close(x4.state_dict()[name], tensor)
    torch.testing.assert_close(x4.tail.weight, tail_before)
    text = caplog.text
    assert "transferred head.weight" in text and "body_act.weight" in text
    assert "freshly initialised tail.weight, tail.bias" in text


def test_loading_x2_into_x4_without_transfer_is_refused():
    with pytest.raises(ElsrError, match="tail.weight"):
        load_weights(ELSR(ModelConfig(scale=4)), ELSR(ModelConfig(scale=2)).state_dict(), "x2.pt")
