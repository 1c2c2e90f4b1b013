"""The devices a command can run on. Torch-free, so that a command line can list them without loading PyTorch."""

import os

DEVICES = ("auto", "cpu", "cuda")  # --device: auto is cuda where there is a GPU, else cpu


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory the kernel reckons available for new work (MemAvailable), or None where it does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
