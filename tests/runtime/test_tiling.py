import numpy as np
import torch

from elsr.model.inference import super_resolve
from elsr.model.network import ELSR, ModelConfig
from elsr.runtime.tiling import auto_tile, upscale_bands, upscale_tiled
from tests.helpers import smooth_image


def random_model(scale: int) -> ELSR:
    torch.manual_seed(3)
    model = ELSR(ModelConfig(scale=scale)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)  # livelier than the default init, so seams would show
    return model


def test_tiled_output_equals_whole_image_output(rng):
    model = random_model(4)
    lr = smooth_image(rng, 70, 95)
    whole = super_resolve(model, lr)
    for tile in (16, 33, 64):
        tiled = upscale_tiled(lambda x: super_resolve(model, x), lr, 4, tile)
        diff = np.abs(tiled.astype(int) - whole.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-4, (tile, diff.max(), (diff > 0).mean())


def test_too_little_overlap_would_show_seams(rng):
    model = random_model(2)
    lr = smooth_image(rng, 40, 40)
    whole = super_resolve(model, lr)
    seams = upscale_tiled(lambda x: super_resolve(model, x), lr, 2, 10, overlap=1)
    assert np.abs(seams.astype(int) - whole.astype(int)).max() > 1


def test_bands_are_full_width_rows_of_the_tiled_image(rng):
    model = random_model(3)
    lr = smooth_image(rng, 50, 37)
    bands = list(upscale_bands(lambda x: super_resolve(model, x), lr, 3, 16))
    assert [b.shape for b in bands] == [(48, 111, 3)] * 3 + [(6, 111, 3)]
    np.testing.assert_array_equal(np.concatenate(bands), upscale_tiled(lambda x: super_resolve(model, x), lr, 3, 16))


def test_auto_tile_grows_with_the_budget_and_shrinks_with_wider_bands():
    assert 32 <= auto_tile(256) < auto_tile(1024) < auto_tile(8192)
    assert auto_tile(1024, width=8000) < auto_tile(1024, width=1000) < auto_tile(1024)
    assert auto_tile(1024, width=4000, bands=2) < auto_tile(1024, width=4000)
