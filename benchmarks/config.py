"""The settings of one benchmark run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from elsr.errors import ElsrError
from elsr.io.images import list_images
from elsr.io.video import EncodeSettings
from elsr.model.devices import usable_cores
from elsr.model.network import DEFAULT_FRAME
from elsr.runtime.tiling import check_forward_fits

DEFAULT_RUNS = 30
DEFAULT_WARMUP = 10
VIDEO_OUTPUT = "video.mp4"   # what the video mode writes (in a temporary folder)


def default_threads() -> list[int]:
    """One thread, and all cores."""
    return sorted({1, usable_cores()})


def parse_size(text: str) -> tuple[int, int]:
    """'180x320' -> (180, 320): LR height x width."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ElsrError(f"--size {text!r} is not HEIGHTxWIDTH", fix="e.g. --size 180x320")
    height, width = int(parts[0]), int(parts[1])
    check_forward_fits(1, height, width, f"--size {text}")
    return height, width


def resolve_threads(values: list[int] | None) -> list[int]:
    """Thread counts to run, in order, without repeats; 0 means all usable cores."""
    if not values:
        return default_threads()
    if any(v < 0 for v in values):
        raise ElsrError(f"--threads must be 0 (all cores) or positive, got {values}")
    return list(dict.fromkeys(v or usable_cores() for v in values))


@dataclass
class BenchConfig:
    weights: Path | None = None                            # PyTorch checkpoint: the torch rows
    models: list[Path] = field(default_factory=list)       # .onnx / .ort / .tflite files
    data: Path | None = None                               # HR images for PSNR/SSIM
    size: tuple[int, int] = DEFAULT_FRAME
    runs: int = DEFAULT_RUNS
    warmup: int = DEFAULT_WARMUP
    threads: list[int] = field(default_factory=default_threads)
    backends: list[str] = field(default_factory=lambda: ["default"])  # names, globs, 'default', 'all'
    video: Path | None = None                              # a video file or frame folder for the video mode
    video_backends: list[str] = field(default_factory=list)   # rows for the video mode (names/globs; [] = default)
    video_frames: int = 0                                  # 0: every frame
    video_encode: list[EncodeSettings] = field(default_factory=lambda: [EncodeSettings()])  # one set of runs each
    convert: bool = False                                  # passed to elsr eval for odd images
    command: str = ""                                      # the command line, for BENCHMARKS.md

    def __post_init__(self) -> None:
        if self.runs < 1 or self.warmup < 0:
            raise ElsrError(f"--runs must be >= 1 and --warmup >= 0 (got {self.runs}, {self.warmup})")
        if self.data is not None and not self.data.is_dir():
            raise ElsrError("no such folder of HR images", path=self.data, fix="check --data")
        if self.data is not None:
            list_images(self.data)  # an empty folder (or one without images) is refused here
        if self.video is not None and not self.video.exists():
            raise ElsrError("no such video file or frame folder", path=self.video, fix="check --video")
        for settings in self.video_encode:
            settings.resolve(Path(VIDEO_OUTPUT))  # an unknown preset or codec is refused before any row runs
        if self.weights is None and not self.models:
            raise ElsrError("nothing to benchmark", fix="pass --weights CKPT and/or --onnx MODEL...")

    @property
    def files(self) -> list[Path]:
        """Every model file given, checkpoint first."""
        return [*([self.weights] if self.weights else []), *self.models]
