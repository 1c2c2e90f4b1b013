"""Core ML packages (.mlpackage): written and read by the optional ``coremltools`` package (``pip install
'elsr[coreml]'``); run only where Core ML is, on Apple platforms.

Elsewhere (Linux, this project's machines) loading one for a prediction is one line saying so, and the
benchmark row says "not run: Core ML runs on Apple platforms". On macOS the package runs through coremltools'
``MLModel.predict`` with images in and out (the package's contract, ``elsr.export.coreml``); that path has
not been run by this project's tests, which run on Linux.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import platform
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from elsr.errors import ElsrError
from elsr.model.inference import array_to_image, image_to_array
from elsr.runtime.base import ModelInfo, Upscaler, check_scale, info_from_metadata
from elsr.runtime.contract import INPUT_NAME, OUTPUT_NAME, positive_int

COREML_SUFFIXES = (".mlpackage",)
COREMLTOOLS_PACKAGE = "coremltools"
EXTRA_HINT = "pip install 'elsr[coreml]'"
NOT_HERE = "not run: Core ML runs on Apple platforms"


def coremltools_available() -> bool:
    return importlib.util.find_spec(COREMLTOOLS_PACKAGE) is not None


def coreml_runs_here() -> bool:
    """Core ML (the framework) is on this machine: macOS, with coremltools to call it."""
    return platform.system() == "Darwin" and coremltools_available()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """coremltools without its chatter: warnings and log lines (untested torch version, no Core ML framework
    here, every graph pass it runs) and its progress bars on stderr."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def import_coremltools(module: str = COREMLTOOLS_PACKAGE):
    """coremltools (or one of its modules), imported quietly; one line with the install hint if it is missing."""
    if not coremltools_available():
        raise ElsrError(f"Core ML support needs the optional package {COREMLTOOLS_PACKAGE!r}", fix=EXTRA_HINT)
    with quiet():
        return importlib.import_module(module)


class CoremlUpscaler(Upscaler):
    """A .mlpackage run by Core ML through coremltools (macOS only): RGB images in and out."""

    def __init__(self, path: str | Path, scale: int | None = None, device: str = "auto", threads: int = 0) -> None:
        self.path = Path(path)
        self.name = self.path.name
        if not coreml_runs_here():
            raise ElsrError(f"{NOT_HERE} (macOS, iOS); this is {platform.system()}", path=self.path,
                            fix="run it on a Mac or in an iOS app; here, use the .onnx, .tflite or .pte files")
        ct = import_coremltools()
        self.model = ct.models.MLModel(str(self.path))
        self.metadata = dict(self.model.user_defined_metadata)
        stored = positive_int(self.metadata.get("scale"))
        if stored is None:
            raise ElsrError("no 'scale' in the package's metadata", path=self.path,
                            fix="export it with 'elsr export --format coreml'")
        self.scale = check_scale(stored, scale, self.path, "Core ML")

    def prepare(self, x: np.ndarray):
        from PIL import Image

        return Image.fromarray(array_to_image(x[:1]))

    def forward(self, prepared):
        return self.model.predict({INPUT_NAME: prepared})[OUTPUT_NAME]

    def fetch(self, y) -> np.ndarray:
        return image_to_array(np.asarray(y.convert("RGB")))

    def run_array(self, x: np.ndarray) -> np.ndarray:
        """One image at a time (the package takes one image)."""
        return np.concatenate([self.fetch(self.forward(self.prepare(x[i: i + 1]))) for i in range(len(x))])

    def upscale_frame(self, lr: np.ndarray) -> np.ndarray:
        from PIL import Image

        return np.asarray(self.forward(Image.fromarray(lr)).convert("RGB"))

    def info(self) -> ModelInfo:
        return info_from_metadata(self.path, self.metadata, self.metadata.get("precision"))
