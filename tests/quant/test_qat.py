import numpy as np
import pytest
import torch

from elsr.errors import ElsrError
from elsr.model.network import ELSR, ModelConfig
from elsr.quant.checkpoint import load_qat_checkpoint, save_qat_checkpoint
from elsr.quant.equalize import equalize_channels
from elsr.quant.fake_quant import ActFakeQuant, QuantELSR, float_taps
from elsr.quant.params import quant_params
from tests.helpers import observe_ranges


def calibrated(scale=4, prelu="shared") -> QuantELSR:
    torch.manual_seed(0)
    return observe_ranges(QuantELSR(ELSR(ModelConfig(scale=scale, prelu=prelu))))


def test_pixel_grid_is_lossless_and_clips():
    quant = ActFakeQuant((0.0, 1.0))
    assert quant.qparams() == pytest.approx((1 / 255, 0))
    pixels = torch.arange(256, dtype=torch.float32) / 255
    torch.testing.assert_close(quant(pixels), pixels)
    assert quant(torch.tensor([-0.3, 1.7])).tolist() == [0.0, 1.0]


def test_observer_tracks_then_freezes_and_keeps_zero_exact():
    quant = ActFakeQuant(momentum=0.5).train()
    quant(torch.tensor([0.5, 2.0]))  # first batch sets the range
    assert float(quant.min_val) == 0.5 and float(quant.max_val) == 2.0
    scale, zero_point = quant.qparams()
    assert scale == pytest.approx(2.0 / 255) and zero_point == 0  # the range is widened to hold 0
    quant(torch.tensor([-1.0, 4.0]))
    assert float(quant.min_val) == pytest.approx(-0.25) and float(quant.max_val) == pytest.approx(3.0)
    quant.frozen.fill_(True)
    quant(torch.tensor([-100.0, 100.0]))
    assert float(quant.max_val) == pytest.approx(3.0)
    assert quant(torch.zeros(1)).item() == 0.0


def test_quant_params_are_integer_and_consistent():
    q = calibrated()
    params = quant_params(q)
    assert set(params.convs) == {"head", "body_conv1", "body_conv2", "tail"}
    for name, conv in params.convs.items():
        layer = getattr(q, name)
        assert conv.weight.dtype == np.int8 and conv.bias.dtype == np.int32
        assert np.abs(conv.weight).max() == 127  # symmetric per-channel scale uses the full range
        deq = conv.weight * conv.weight_scale[:, None, None, None]
        assert np.abs(deq - layer.weight.detach().numpy()).max() <= conv.weight_scale.max() / 2 + 1e-7
    head_input_scale = params.activations["input"][0]
    np.testing.assert_allclose(params.convs["head"].bias_scale, params.convs["head"].weight_scale * head_input_scale,
                               rtol=1e-6)
    assert params.activations["tail"] == pytest.approx((1 / 255, 0))
    assert params.slope.shape == (1,)


def test_fake_quant_output_is_on_the_pixel_grid_and_close_to_float():
    q = calibrated()
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        y = q(x)
        ref = q.to_float()(x)
    levels = y * 255
    torch.testing.assert_close(levels, levels.round())
    assert y.min() >= 0 and y.max() <= 1
    assert (y - ref.clamp(0, 1)).abs().mean() < 0.02


def test_taps_cover_the_same_points_as_float_taps():
    q = calibrated()
    x = torch.rand(1, 3, 8, 8)
    taps = {}
    with torch.no_grad():
        q(x, taps)
        ref = float_taps(q.to_float(), x)
    assert taps.keys() == ref.keys()
    for name in taps:
        assert taps[name].shape == ref[name].shape


def test_qat_checkpoint_round_trip(tmp_path):
    q = calibrated(prelu="channel")
    save_qat_checkpoint(tmp_path / "m.qat.pt", q, [{"epoch": 1}])
    loaded = load_qat_checkpoint(tmp_path / "m.qat.pt")
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), q(x))
    torch.save({"format": "elsr-checkpoint"}, tmp_path / "plain.pt")
    with pytest.raises(ElsrError, match="not a QAT checkpoint"):
        load_qat_checkpoint(tmp_path / "plain.pt")


def test_learned_range_starts_at_the_observed_one_and_trains():
    quant = ActFakeQuant().train()
    x = torch.cat([torch.tensor([-0.5, 2.0]), torch.rand(1000, generator=torch.Generator().manual_seed(0)) * 2.4 - 0.45])
    quant(x)
    observed = quant.qparams()
    before = quant(x).detach()
    quant.learn_range()
    assert quant.qparams() == pytest.approx(observed)
    torch.testing.assert_close(quant(x), before, atol=1e-6, rtol=0)
    quant(x * 3).pow(2).mean().backward()  # clipped values pull on the scale and the zero point
    assert quant.log_scale.grad is not None and quant.log_scale.grad.abs() > 0
    assert quant.zero_point.grad is not None and quant.zero_point.grad.abs() > 0
    with torch.no_grad():
        quant.log_scale.add_(0.3)
        quant.zero_point.add_(7.4)
    scale, zero_point = quant.qparams()
    assert isinstance(zero_point, int) and zero_point == observed[1] + 7
    assert scale == pytest.approx(observed[0] * np.exp(0.3), rel=1e-6)
    assert quant(torch.zeros(1)).item() == 0.0  # zero stays exact


def test_learned_ranges_only_for_the_observed_tensors():
    q = calibrated()
    q.learn_ranges()
    assert {n for n, m in q.quant.items() if bool(m.learned)} == {"head", "body_conv1", "body_act", "body_conv2", "add"}
    assert q.quant["input"].qparams() == pytest.approx((1 / 255, 0))
    ranges, weights = {id(p) for p in q.range_parameters()}, {id(p) for p in q.weight_parameters()}
    assert len(ranges) == 2 * len(q.quant) and not ranges & weights
    assert ranges | weights == {id(p) for p in q.parameters()}


@pytest.mark.parametrize("prelu", ["shared", "channel"])
def test_equalization_keeps_the_function_and_evens_out_channel_ranges(prelu):
    torch.manual_seed(4)
    model = ELSR(ModelConfig(scale=2, prelu=prelu)).eval()
    with torch.no_grad():
        model.body_conv1.weight[0].mul_(8.0)  # one channel much wider than the others
        model.body_conv1.bias[0].mul_(8.0)
        model.head.weight[2].mul_(0.1)
    batches = [torch.rand(2, 3, 20, 20) for _ in range(2)]
    equalized = equalize_channels(model, batches)
    x = torch.rand(1, 3, 15, 17)
    with torch.no_grad():
        torch.testing.assert_close(equalized(x), model(x), atol=1e-5, rtol=1e-5)

        def spread_ratio(m, name):
            t = torch.cat([float_taps(m, b)[name] for b in batches])
            spread = t.amax(dim=(0, 2, 3)) - t.amin(dim=(0, 2, 3))
            return float(spread.max() / spread.min())

        assert spread_ratio(equalized, "body_conv1") < 1.01 < spread_ratio(model, "body_conv1")
        assert spread_ratio(equalized, "head") < spread_ratio(model, "head")


class BlackTargets:
    """A training source whose HR patches are all black: only distillation can keep the model's function."""

    def batches(self, scale, patch, batch_size, iters, seed, **_):
        gen = torch.Generator().manual_seed(sum(seed))
        for _ in range(iters):
            lr = torch.rand(batch_size, 3, patch, patch, generator=gen)
            yield lr, torch.zeros(batch_size, 3, patch * scale, patch * scale)


@pytest.mark.parametrize("distill, ema", [(0.0, 0.0), (1.0, 0.0), (1.0, 0.9)])
def test_distillation_follows_the_fp32_model_not_the_targets(tmp_path, rng, distill, ema):
    from elsr.data.validation import ValidationSet
    from elsr.quant.qat import QATConfig, train_qat
    from tests.helpers import image_folder, nearest_neighbour_elsr

    model = nearest_neighbour_elsr(2)
    val = ValidationSet(image_folder(tmp_path / "val", rng, count=1, size=(24, 24)))
    cfg = QATConfig(epochs=2, iters_per_epoch=15, batch_size=4, patch_size=12, lr=1e-2, range_lr=1e-2,
                    calibration_batches=2, distill=distill, ema=ema)
    qmodel, history = train_qat(model, BlackTargets(), val, cfg, torch.device("cpu"), progress=False)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        error = float((qmodel(x) - model(x)).abs().mean())
    assert ("ema_psnr_y" in history[-1]) == bool(ema)
    if distill:
        assert error < 0.05  # still close to the nearest-neighbour upscaler
    else:
        assert error > 0.1   # pulled towards the black targets


def test_distill_weight_outside_0_1_is_refused():
    from elsr.quant.qat import QATConfig

    with pytest.raises(ElsrError, match="distill"):
        QATConfig(distill=1.5)


def test_ema_moves_parameters_part_way_and_copies_buffers():
    from elsr.quant.qat import update_ema

    ema, current = calibrated(), calibrated()
    with torch.no_grad():
        for p in current.parameters():
            p.add_(1.0)
        current.quant["head"].min_val.fill_(-3.0)
    before = [p.clone() for p in ema.parameters()]
    update_ema(ema, current, decay=0.75)
    for old, new, target in zip(before, ema.parameters(), current.parameters()):
        torch.testing.assert_close(new, old + 0.25 * (target - old))
    assert float(ema.quant["head"].min_val) == -3.0


def test_ema_decay_and_luma_weight_outside_their_ranges_are_refused():
    from elsr.quant.qat import QATConfig

    with pytest.raises(ElsrError, match="ema"):
        QATConfig(ema=1.0)
    with pytest.raises(ElsrError, match="luma weight"):
        QATConfig(luma_weight=1.0)
