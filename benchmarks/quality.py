"""PSNR/SSIM of each row: exactly what `elsr eval` reports for that model file (MATLAB-bicubic LR)."""

from __future__ import annotations

from pathlib import Path

from elsr.data.metrics import METRIC_KEYS
from elsr.errors import ElsrError
from elsr.runtime.evaluate import EvalConfig, evaluate


class QualityCache:
    """Runs ``elsr.runtime.evaluate.evaluate`` once per (model file, device) on ``data`` and remembers the means."""

    def __init__(self, data: Path, convert: bool = False) -> None:
        self.data, self.convert = data, convert
        self._results: dict[tuple[Path, str], dict | ElsrError] = {}
        self.bicubic: dict[str, float] | None = None

    def scores(self, model: Path, device: str = "cpu") -> dict[str, float]:
        """Mean psnr_y, psnr_rgb, ssim_y, ssim_rgb of ``model``; ElsrError when it cannot be evaluated."""
        key = (model, device)
        if key not in self._results:
            try:
                result = evaluate(EvalConfig(model=model, data=self.data, device=device, convert=self.convert,
                                             progress=False))
                self._results[key] = {k: result["mean"]["model"][k] for k in METRIC_KEYS}
                self.bicubic = self.bicubic or {k: result["mean"]["bicubic"][k] for k in METRIC_KEYS}
            except ElsrError as exc:
                self._results[key] = exc
        found = self._results[key]
        if isinstance(found, ElsrError):
            raise found
        return found

    def command(self, model: Path, device: str = "cpu") -> str:
        convert = " --convert" if self.convert else ""
        return f"elsr eval --model {model} --data {self.data} --device {device}{convert}"
