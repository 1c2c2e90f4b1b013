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


def test_output_conversion_equals_numpy_bit_for_bit(rng):
    """The OpenCV conversion gives exactly numpy's multiply, clip, rint, cast and transpose, ties included."""
    y = rng.uniform(-0.2, 1.2, (3, 64, 96)).astype(np.float32)
    y[:, :4] = (rng.integers(0, 255, (3, 4, 96)) + 0.5).astype(np.float32) / np.float32(255)  # near ties
    y[:, 4:8] = rng.integers(0, 256, (3, 4, 96)).astype(np.float32) / np.float32(255)        # INT8 outputs: k/255
    reference = np.rint(np.clip(np.multiply(y, np.float32(255), dtype=np.float32), 0, 255)).astype(np.uint8)
    assert np.array_equal(array_to_image(y), reference.transpose(1, 2, 0))
    assert array_to_image(y[:1]).shape == (64, 96, 1)
