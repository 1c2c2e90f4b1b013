"""Memory of one training step, checked before a run starts: a batch or patch size that cannot fit is one line
naming both figures, never a process the kernel kills (or a machine that swaps) halfway through a run.
"""

from __future__ import annotations

from elsr.errors import ElsrError
from elsr.io.files import human_bytes
from elsr.model.devices import available_memory

# Peak bytes of one CPU training step (forward, backward, Adam) per LR pixel of the batch: measured about
# 1.1 KB at x4 (batch 32 of 128x128 patches, the batch's own 204 B included), doubled for the data pipeline's
# copies of the batch; x2 and x3 need less.
TRAIN_BYTES_PER_LR_PIXEL = 2048
BATCH_COPIES = 2   # the batch being used and the next one being cut, on the host


def host_batch_bytes(batch: int, patch: int, scale: int) -> int:
    """Bytes of the float32 LR and HR patches of a batch, as many as the host holds at once."""
    return BATCH_COPIES * 4 * 3 * batch * patch * patch * (1 + scale * scale)


def step_bytes(batch: int, patch: int, scale: int, on_cpu: bool) -> int:
    """About the peak memory one training step needs on the host: the whole step on a CPU, the batches alone
    when a GPU runs the model."""
    if on_cpu:
        return TRAIN_BYTES_PER_LR_PIXEL * batch * patch * patch
    return host_batch_bytes(batch, patch, scale)


def check_batch_fits(batch: int, patch: int, scale: int, on_cpu: bool, what: str, path=None) -> None:
    """Refuse, before any work, a batch of ``batch`` LR patches of ``patch`` x ``patch`` pixels whose training
    step needs more memory than is available; ``what`` names where the sizes come from (a stage, an option)."""
    need, free = step_bytes(batch, patch, scale, on_cpu), available_memory()
    if free is not None and need > free:
        raise ElsrError(f"{what}: one training step on {batch} patches of {patch}x{patch} LR pixels at x{scale} "
                        f"needs about {human_bytes(need)} of memory, and {human_bytes(free)} are available",
                        path=path, fix="use a smaller batch_size or patch_size")
