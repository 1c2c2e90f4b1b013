"""Validation images: whole HR images, mod-cropped, with MATLAB-bicubic LR and bicubic's own scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from elsr.data.bicubic import downscale, upscale
from elsr.data.metrics import image_metrics, mean_metrics
from elsr.io.images import list_images, mod_crop, read_image


def dataset_name(folder: str | Path) -> str:
    """A folder of HR test images by its set's name: Set5 for .../Set5/HR, else the folder's own name."""
    folder = Path(folder)
    return folder.parent.name if folder.name == "HR" and folder.parent.name else folder.name or str(folder)


@dataclass
class ValImage:
    name: str
    lr: np.ndarray
    hr: np.ndarray


class ValidationSet:
    """Full images: HR mod-cropped to the scale, LR made by MATLAB bicubic; bicubic scores cached."""

    def __init__(self, root: str | Path, convert: bool = False) -> None:
        self.root = Path(root)
        self.files = list_images(self.root)
        self.images = [read_image(p, convert=convert) for p in self.files]
        self._cache: dict[int, tuple[list[ValImage], dict[str, float]]] = {}

    def for_scale(self, scale: int) -> list[ValImage]:
        return self._prepare(scale)[0]

    def bicubic_scores(self, scale: int) -> dict[str, float]:
        return self._prepare(scale)[1]

    def _prepare(self, scale: int):
        if scale not in self._cache:
            items, scores = [], []
            for path, img in zip(self.files, self.images):
                hr = mod_crop(img, scale)
                lr = downscale(hr, scale)
                items.append(ValImage(path.stem, lr, hr))
                scores.append(image_metrics(upscale(lr, scale), hr, scale))
            self._cache[scale] = (items, mean_metrics(scores))
        return self._cache[scale]
