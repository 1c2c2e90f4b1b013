"""The records a benchmark run produces: one Row per backend row, and the whole result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from elsr.benchmarks.machine import Machine


@dataclass
class Row:
    """One line of the report; fields that could not be measured stay None."""

    name: str                       # backend:file
    backend: str
    kind: str                       # torch, onnxruntime, tflite, reference
    model: str | None
    status: str = "ok"              # 'ok', or 'skipped: why' / 'failed: why'
    precision: str | None = None
    threads: int | None = None
    size_bytes: int | None = None
    params: int | None = None
    input_shape: str | None = None  # 1x3xHxW
    median_ms: float | None = None
    p90_ms: float | None = None
    min_ms: float | None = None
    mean_ms: float | None = None
    runs: int | None = None
    fps: float | None = None
    realtime_fraction: float | None = None   # fps / the paper's 30 fps
    gmacs_per_frame: float | None = None
    gmac_per_s: float | None = None
    peak_gmac_per_s: float | None = None     # nominal estimate (see Machine.peak_note)
    peak_fraction: float | None = None
    peak_rss_bytes: int | None = None        # process RSS high-water mark while this row ran
    gpu_peak_bytes: int | None = None        # torch CUDA rows: max memory allocated
    psnr_y: float | None = None
    psnr_rgb: float | None = None
    ssim_y: float | None = None
    ssim_rgb: float | None = None
    quality_source: str | None = None        # the `elsr eval` call whose means these are
    load_before: float | None = None         # 1-minute load average when the row started and ended
    load_after: float | None = None
    reliability: str | None = None           # timed rows: 'ok' or 'unreliable: why' (elsr.benchmarks.reliability)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def spread(self) -> float | None:
        """p90 / median of the timed runs."""
        return self.p90_ms / self.median_ms if self.p90_ms and self.median_ms else None

    @property
    def size_kib(self) -> float | None:
        return None if self.size_bytes is None else self.size_bytes / 1024

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size_kib": self.size_kib, "spread": self.spread}


@dataclass
class BenchResult:
    machine: Machine
    settings: dict[str, Any]
    rows: list[Row]
    paper: dict[str, Any]
    video: list[dict[str, Any]] | None = None   # the video mode: one record per (row, encoder settings)
    readiness: list[dict[str, str]] = field(default_factory=list)   # which phone accelerators take each model file

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine.to_dict(), "settings": self.settings, "paper": self.paper,
                "video": self.video, "readiness": self.readiness, "rows": [row.to_dict() for row in self.rows]}
