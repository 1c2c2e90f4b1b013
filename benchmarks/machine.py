"""The machine: CPU description, an estimate of its peak MAC rate, and the process's peak memory."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from elsr.model.devices import usable_cores

CPUINFO = Path("/proc/cpuinfo")
MAX_FREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
FMA_UNITS = 2        # assumed FMA pipes per core (some CPUs have one 512-bit unit: the peak is then half)
VNNI_INT8_FACTOR = 4  # a VNNI int8 dot product does 4 MACs per 32-bit lane
SIMD_LANES = (("avx512f", 16), ("avx2", 8), ("avx", 8), ("sse2", 4), ("asimd", 4))  # fp32 lanes per vector


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        text = CPUINFO.read_text()
    except OSError:
        return fields
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    return fields


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - a missing or broken package is just 'not installed'
        return "not installed"


def _gpu() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


@dataclass(frozen=True)
class Machine:
    """What the numbers were measured on; the peak is a nominal estimate, not a measurement."""

    cpu: str
    logical_cores: int
    usable_cores: int
    clock_ghz: float | None
    clock_source: str
    simd: str                    # widest fp32 vector ISA found
    fp32_macs_per_cycle: int     # per core: lanes x FMA units
    vnni: bool
    os: str
    python: str
    torch: str
    onnxruntime: str
    gpu: str | None
    date: str

    @classmethod
    def detect(cls) -> "Machine":
        info = _cpuinfo()
        flags = set((info.get("flags") or info.get("features") or "").split())
        simd, lanes = next(((name, n) for name, n in SIMD_LANES if name in flags), ("scalar", 1))
        clock, source = None, "unknown"
        try:
            clock, source = int(MAX_FREQ.read_text()) / 1e6, "cpufreq max"
        except (OSError, ValueError):
            if info.get("cpu mhz"):
                clock, source = float(info["cpu mhz"]) / 1e3, "/proc/cpuinfo current MHz"
        return cls(cpu=info.get("model name") or platform.processor() or platform.machine(),
                   logical_cores=os.cpu_count() or 1, usable_cores=usable_cores(),
                   clock_ghz=clock, clock_source=source, simd=simd, fp32_macs_per_cycle=lanes * FMA_UNITS,
                   vnni=bool(flags & {"avx512_vnni", "avx_vnni"}),
                   os=platform.platform(), python=platform.python_version(), torch=_version("torch"),
                   onnxruntime=_version("onnxruntime"), gpu=_gpu(),
                   date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))

    def peak_gmacs(self, threads: int | None, precision: str | None) -> float | None:
        """Nominal CPU peak in GMAC/s for ``threads`` cores: cores x clock x lanes x FMA units (x4 for VNNI int8)."""
        if threads is None or self.clock_ghz is None:
            return None
        factor = VNNI_INT8_FACTOR if self.vnni and (precision or "").startswith("int8") else 1
        return min(threads, self.usable_cores) * self.clock_ghz * self.fp32_macs_per_cycle * factor

    def peak_note(self) -> str:
        clock = f"{self.clock_ghz:.2f} GHz ({self.clock_source})" if self.clock_ghz else "unknown clock"
        int8 = (f"INT8 rows: x{VNNI_INT8_FACTOR} for VNNI" if self.vnni
                else "INT8 rows: no VNNI, the fp32 peak is used")
        return (f"% peak is an estimate, not a measurement: threads x {clock} x {self.fp32_macs_per_cycle} fp32 "
                f"MACs/cycle ({self.simd}, {FMA_UNITS} FMA units assumed); {int8}.")

    def line(self) -> str:
        gpu = f", GPU {self.gpu}" if self.gpu else ", no CUDA GPU"
        clock = f" @ {self.clock_ghz:.2f} GHz" if self.clock_ghz else ""
        return (f"{self.cpu}{clock}, {self.usable_cores} usable of {self.logical_cores} logical cores, {self.simd}"
                f"{' + VNNI' if self.vnni else ''}{gpu}; {self.os}; Python {self.python}, torch {self.torch}, "
                f"onnxruntime {self.onnxruntime}; {self.date}")

    def to_dict(self) -> dict:
        return asdict(self)


def reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0); False where that is impossible."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """The process's resident-set high-water mark (since the last reset_peak_rss, where it worked)."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024
