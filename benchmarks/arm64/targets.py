"""What the ARM64 check runs on: the emulated cores and the runtimes inside the arm64 root.

Two tables. A core is a ``QEMU_CPU`` value; ``phone`` marks the cores phones ship (an INT8 difference
on a phone core fails the check). A runtime is what the runner script (``runner.py``) calls inside the
root; ``distributions`` are the pip distributions it needs there (installed as aarch64 wheels of the
same versions as on this machine), ``phone_default`` marks what an app gets without changing any
setting (an INT8 difference there fails the check; the others are reported).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Core:
    name: str        # the QEMU_CPU value
    phone: bool      # phones ship this core (or its feature set): its default-runtime INT8 rows must match x86
    what: str


CORES: tuple[Core, ...] = (
    Core("cortex-a53", True, "Armv8.0-A, no dot product: the little cores of 2016-2020 phones"),
    Core("cortex-a55", True, "Armv8.2-A with dot product: the little cores of 2018-2023 phones"),
    Core("cortex-a76", True, "Armv8.2-A with dot product: the big cores of 2019-2021 phones"),
    Core("neoverse-n1", False, "Arm's server core (AWS Graviton2), a Cortex-A76 derivative: reported"),
    Core("cortex-a710", True, "Armv9.0-A with SVE2, i8mm and bf16: the big cores of Dimensity 9000 / Snapdragon 8 Gen 1"),
    Core("max,sme=off", True, "every Armv9 feature QEMU emulates except SME: the newest cores without SME"),
    Core("max", True, "every feature QEMU emulates: SME2 with QEMU 11.1 (SME only with 10.0): the 2025 "
                      "flagships' cores"),
)
DEFAULT_CORES = tuple(core.name for core in CORES)


def core_named(name: str) -> Core:
    """A core of the table, or one given by its QEMU_CPU value alone (counted as a phone core)."""
    return next((c for c in CORES if c.name == name), Core(name, True, "given with --cores"))


@dataclass(frozen=True)
class RootRuntime:
    name: str                          # the runner's name for it
    distributions: tuple[str, ...]     # pip distributions it needs in the root, pinned to this machine's versions
    phone_default: bool                # what an app gets by default
    what: str


RUNTIMES: tuple[RootRuntime, ...] = (
    RootRuntime("onnxruntime", ("onnxruntime",), True, "ONNX Runtime, CPU execution provider (MLAS kernels)"),
    RootRuntime("litert-xnnpack", ("ai-edge-litert",), True, "LiteRT with its default delegate, XNNPACK"),
    RootRuntime("litert-builtin", ("ai-edge-litert",), False,
                "LiteRT's builtin kernels, XNNPACK off (BUILTIN_WITHOUT_DEFAULT_DELEGATES)"),
)
BASE_DISTRIBUTIONS = ("numpy",)        # the runner itself needs numpy


def runtime_named(name: str) -> RootRuntime:
    return next(r for r in RUNTIMES if r.name == name)
