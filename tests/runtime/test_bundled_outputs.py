"""The bundled models give exactly the pixels they gave when they were made: a refactor, a new loader or a
runtime update that changes one output byte fails here.

The hashes are of each model's uint8 output on one fixed random 37x45 image (SHA-256, first 16 hex digits),
recorded when the models were bundled. Re-making a bundled model on purpose means recording its new hash.
"""

import hashlib

import numpy as np
import pytest

from elsr.runtime.loaders import load_upscaler

EXPECTED = {
    "x2": "e2ddd7c46638b4d6",
    "x4": "541d0cde4513e9c1",
    "x4-onnx": "5a3ebba5f906e0a3",
    "x4-int8": "27b3892356616c30",
    "x4-int8-ort": "27b3892356616c30",   # the .ort file gives exactly its .onnx file's pixels
    "x4-int8-tflite": "1e2067ee315c29f2",   # the same integers in XNNPACK's arithmetic (its LeakyRelu rounds apart)
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_model_output_is_unchanged(name):
    image = np.random.default_rng(0).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    output = load_upscaler(name, device="cpu")(image)
    assert hashlib.sha256(output.tobytes()).hexdigest()[:16] == EXPECTED[name]
