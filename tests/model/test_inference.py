import numpy as np
import pytest
import torch

from elsr.errors import ElsrError
from elsr.model.inference import array_to_image, image_to_array, image_to_tensor, tensor_to_uint8
from tests.helpers import smooth_image


def test_input_is_the_uint8_grid_divided_by_255(rng):
    frame = smooth_image(rng, 13, 17)
    x = image_to_array(frame)
    assert x.shape == (1, 3, 13, 17) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    expected = torch.from_numpy(frame.copy()).permute(2, 0, 1)[None].float().div(255.0)
    assert torch.equal(image_to_tensor(frame), expected)
    with pytest.raises(ElsrError, match="HxWx3 uint8"):
        image_to_array(frame[:, :, 0])


def test_output_is_clipped_and_rounded_half_to_even(rng):
    y = rng.normal(0.5, 0.5, (1, 3, 9, 11)).astype(np.float32)
    y[0, 0, 0, :5] = [0.5 / 255, 1.5 / 255, 2.5 / 255, -0.3, 1.7]
    expected = torch.from_numpy(y)[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(array_to_image(y), expected)
    assert array_to_image(y)[0, 0, 0] == 0 and array_to_image(y)[0, 4, 0] == 255
    assert np.array_equal(tensor_to_uint8(torch.from_numpy(y)), expected)
