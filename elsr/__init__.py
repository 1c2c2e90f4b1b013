"""ELSR: extreme low-power super-resolution, from training to a phone.

>>> from elsr import load_model, load_upscaler, super_resolve, read_image, write_image
>>> upscaler = load_upscaler()   # what `elsr upscale` runs on images: the bundled INT8 model (x4-int8)
>>> write_image("big.png", upscaler(read_image("small.png")))
>>> model, _ = load_model("x4")  # a PyTorch checkpoint (a bundled model's name or a path): FP32, trainable
>>> write_image("big_fp32.png", super_resolve(model, read_image("small.png")))

This module is the public API; nothing inside the package imports it. Its names are imported on first
use, so that importing any part of elsr (``python -m elsr.benchmarks.large_image``, ``elsr --help``)
does not load PyTorch until something needs it.
"""

from elsr.version import __version__

__all__ = ["ELSR", "ModelConfig", "load_model", "load_upscaler", "read_image", "super_resolve", "write_image",
           "__version__"]


def __getattr__(name: str):
    if name in ("read_image", "write_image"):
        from elsr.io import images
        return getattr(images, name)
    if name == "load_model":
        from elsr.model import checkpoint
        return checkpoint.load_model
    if name == "load_upscaler":
        from elsr.runtime import loaders
        return loaders.load_upscaler
    if name == "super_resolve":
        from elsr.model import inference
        return inference.super_resolve
    if name in ("ELSR", "ModelConfig"):
        from elsr.model import network
        return getattr(network, name)
    raise AttributeError(f"module 'elsr' has no attribute {name!r}")
