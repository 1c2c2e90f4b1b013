"""ELSR: extreme low-power super-resolution, from training to a phone.

>>> from elsr import load_model, super_resolve, read_image, write_image
>>> model, _ = load_model("x4")  # a bundled model's name, or a checkpoint path
>>> write_image("big.png", super_resolve(model, read_image("small.png")))
"""

__version__ = "0.1.0"

from .checkpoint import load_model  # noqa: E402
from .imageio import read_image, write_image  # noqa: E402
from .inference import super_resolve  # noqa: E402
from .model import ELSR, ModelConfig  # noqa: E402

__all__ = ["ELSR", "ModelConfig", "load_model", "read_image", "super_resolve", "write_image", "__version__"]
