"""Training data: random paired LR/HR patches from image folders or from HDF5 patch files."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from elsr.data.bicubic import downscale
from elsr.errors import ElsrError
from elsr.io.images import list_images, mod_crop, read_image
from elsr.io.kinds import HDF5_SUFFIXES

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


def augment(lr: np.ndarray, hr: np.ndarray, mode: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply the same one of the 8 flips/rotations (``mode`` 0..7) to an HWC LR/HR pair."""
    def apply(img: np.ndarray) -> np.ndarray:
        if mode & 1:
            img = img[:, ::-1]
        if mode & 2:
            img = img[::-1]
        if mode & 4:
            img = img.transpose(1, 0, 2)
        return img
    return apply(lr), apply(hr)


def to_uint8(batch: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """A list of HWC uint8 patches (or an NHWC array) -> one uint8 NHWC tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.stack(batch) if not isinstance(batch, np.ndarray) else batch))


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC tensor (on any device) -> float32 NCHW in [0, 1] (channels_last strides)."""
    return batch.permute(0, 3, 1, 2).float().div_(255.0)


def to_tensor(batch: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """uint8 NHWC (or a list of HWC) -> float32 NCHW in [0, 1]."""
    return to_float(to_uint8(batch))


def shard_size(batch_size: int, rank: int, world_size: int) -> int:
    """Items of one rank in a global batch: an equal share, so DDP's mean of gradients is the global one."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad shard: rank {rank} of {world_size}")
    if batch_size % world_size:
        raise ElsrError(f"batch size {batch_size} cannot be split evenly over {world_size} training processes",
                        fix="use a number of processes that divides the batch size")
    return batch_size // world_size


def crop_pair(lr: np.ndarray, hr: np.ndarray, scale: int, patch: int, top: int, left: int, mode: int):
    """LR patch at (top, left) with its aligned HR patch, augmented with ``mode``."""
    lr_patch = lr[top: top + patch, left: left + patch]
    hr_patch = hr[top * scale: (top + patch) * scale, left * scale: (left + patch) * scale]
    return augment(lr_patch, hr_patch, mode)


class FolderSource:
    """Image folders held in memory; LR made once per scale with MATLAB bicubic."""

    def __init__(self, root: str | Path, convert: bool = False) -> None:
        self.root = Path(root)
        files = list_images(self.root)
        self.images = [read_image(p, convert=convert) for p in files]
        self.names = [str(p) for p in files]
        self._pairs: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        self._reported: set[tuple[int, int]] = set()
        log.info("training data: %d images from %s", len(self.images), self.root)

    def pairs(self, scale: int) -> list[tuple[np.ndarray, np.ndarray]]:
        if scale not in self._pairs:
            pairs = []
            for hr in self.images:
                hr = mod_crop(hr, scale)
                pairs.append((downscale(hr, scale), hr))
            self._pairs[scale] = pairs
        return self._pairs[scale]

    def usable(self, scale: int, patch: int) -> list[tuple[np.ndarray, np.ndarray]]:
        pairs = [p for p in self.pairs(scale) if min(p[0].shape[:2]) >= patch]
        if not pairs:
            raise ElsrError(f"no training image is large enough for {patch}px LR patches at x{scale}",
                            path=self.root, fix="use a smaller patch_size or larger images")
        if len(pairs) < len(self.images) and (scale, patch) not in self._reported:
            self._reported.add((scale, patch))
            few = len(pairs) < len(self.images) / 2  # most of the data unused: the user should know
            log.log(logging.WARNING if few else logging.INFO,
                    "x%d, %dpx patches: %d of %d images are too small and skipped%s", scale, patch,
                    len(self.images) - len(pairs), len(self.images),
                    f": this stage trains on {len(pairs)} image(s) (lower the stage's patch_size or add larger "
                    "images)" if few else "")
        return pairs

    def num_patches(self, scale: int, patch: int) -> int:
        """Non-overlapping LR patches in the set: the length of one 'pass'."""
        return sum((lr.shape[0] // patch) * (lr.shape[1] // patch) for lr, _ in self.usable(scale, patch))

    def fingerprint(self) -> str:
        """Digest of the names, shapes and pixels: equal on every rank given the same images."""
        digest = hashlib.sha256()
        for name, img in zip(self.names, self.images):
            relative = Path(name).relative_to(self.root) if self.root.is_dir() else Path(name).name
            digest.update(f"{relative}|{img.shape}".encode())
            digest.update(np.ascontiguousarray(img).data)
        return digest.hexdigest()[:16]

    def batches(self, scale: int, patch: int, batch_size: int, iters: int, seed: Sequence[int],
                rank: int = 0, world_size: int = 1, uint8: bool = False) -> Iterator[Batch]:
        """``iters`` batches of random aligned crops, a pure function of ``seed``.

        ``batch_size`` is the global batch: every rank draws the same global batch and keeps its
        own contiguous share (``batch_size / world_size`` items), so the ranks' shares together are
        exactly the single-process batch. ``uint8`` yields NHWC uint8 tensors (see :func:`to_float`).
        """
        share = shard_size(batch_size, rank, world_size)
        mine = slice(rank * share, (rank + 1) * share)
        convert = to_uint8 if uint8 else to_tensor
        pairs = self.usable(scale, patch)
        rng = np.random.default_rng(list(seed))
        # Draw images in proportion to their number of patch positions (big images, more crops).
        weights = np.array([(lr.shape[0] - patch + 1) * (lr.shape[1] - patch + 1) for lr, _ in pairs], float)
        weights /= weights.sum()
        for _ in range(iters):
            draws = []  # the whole global batch is drawn on every rank: the same random stream
            for idx in rng.choice(len(pairs), size=batch_size, p=weights):
                lr = pairs[idx][0]
                top = int(rng.integers(lr.shape[0] - patch + 1))
                left = int(rng.integers(lr.shape[1] - patch + 1))
                draws.append((idx, top, left, int(rng.integers(8))))
            lrs, hrs = [], []
            for idx, top, left, mode in draws[mine]:
                a, b = crop_pair(*pairs[idx], scale, patch, top, left, mode)
                lrs.append(a)
                hrs.append(b)
            yield convert(lrs), convert(hrs)


def patch_dataset(handle: h5py.File, name: str, path: Path) -> h5py.Dataset:
    """The uint8 patch dataset ``name`` of an HDF5 file, its data inside the file itself; one line otherwise (a
    link or external storage would read another file, as ONNX external data outside its folder would)."""
    fix = "rebuild it with 'elsr prepare'"
    link = handle.get(name, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise ElsrError(f"HDF5 '{name}' is a link ({type(link).__name__}): elsr reads patches kept in the file "
                        "itself", path=path, fix=fix)
    dataset = handle[name]
    if not isinstance(dataset, h5py.Dataset):
        raise ElsrError(f"HDF5 '{name}' is a {type(dataset).__name__.lower()}, not a dataset of patches", path=path,
                        fix=fix)
    if dataset.external or dataset.is_virtual:
        raise ElsrError(f"HDF5 '{name}' keeps its data outside the file (external or virtual storage): elsr reads "
                        "patches kept in the file itself", path=path, fix=fix)
    if dataset.dtype != np.uint8:
        raise ElsrError(f"HDF5 '{name}' holds {dataset.dtype} values, not uint8 pixels", path=path, fix=fix)
    return dataset


def hdf5_lr_key(handle: h5py.File, scale: int, path: Path) -> str:
    """Name of the LR dataset for ``scale`` in an HDF5 patch file (both it and 'hr' checked by
    :func:`patch_dataset`), or a clear error."""
    if "hr" not in handle:
        raise ElsrError("HDF5 file has no 'hr' dataset", path=path, fix="build it with 'elsr prepare'")
    hr = patch_dataset(handle, "hr", path)
    key = f"lr_x{scale}"
    if key in handle:
        patch_dataset(handle, key, path)
        return key
    if "lr" not in handle:
        raise ElsrError(f"HDF5 file has no '{key}' or 'lr' dataset", path=path,
                        fix=f"build it with 'elsr prepare --scales {scale}'")
    hr_side, lr_side = hr.shape[1], patch_dataset(handle, "lr", path).shape[1]
    if lr_side * scale != hr_side:
        raise ElsrError(f"HDF5 'lr' patches are {lr_side}px for {hr_side}px 'hr': not x{scale}", path=path,
                        fix=f"prepare a file with --scales {scale}")
    return "lr"


class HDF5Patches(Dataset):
    """Random crops of stored LR/HR patches as uint8 HWC arrays (views; :func:`collate_uint8` copies
    them once, into the batch).

    The file is opened lazily, once per process that reads (each DataLoader worker has its own
    handle: no handle is shared across a fork). A stored patch is one HDF5 chunk and is read whole,
    in one call without the chunk cache: faster than a partial (row by row) read of the crop.
    """

    def __init__(self, path: str | Path, scale: int, patch: int) -> None:
        self.path, self.scale, self.patch = Path(path), scale, patch
        self._handle: h5py.File | None = None
        self._datasets: tuple = ()
        try:
            with h5py.File(self.path, "r") as handle:
                self.lr_key = hdf5_lr_key(handle, scale, self.path)
                lr, hr = handle[self.lr_key], handle["hr"]
                if lr.ndim != 4 or hr.ndim != 4 or lr.shape[0] != hr.shape[0] or lr.shape[3] != 3:
                    raise ElsrError(f"HDF5 shapes do not pair up: lr {lr.shape}, hr {hr.shape}",
                                    path=self.path, fix="expected (N, P/s, P/s, 3) and (N, P, P, 3)")
                if hr.shape[1] != lr.shape[1] * scale or hr.shape[2] != lr.shape[2] * scale:
                    raise ElsrError(f"HDF5 lr {lr.shape} and hr {hr.shape} are not x{scale} apart",
                                    path=self.path)
                self.length, self.stored = lr.shape[0], min(lr.shape[1:3])
                self.lr_shape = tuple(lr.shape[1:3])
        except OSError as exc:
            raise ElsrError("not a readable HDF5 file (corrupt, truncated or another format)", path=self.path,
                            fix="rebuild it with 'elsr prepare'") from exc
        if self.length == 0:
            raise ElsrError("HDF5 file holds no patches", path=self.path)
        if patch > self.stored:
            raise ElsrError(f"stage wants {patch}px LR patches but the file stores {self.stored}px at x{scale}",
                            path=self.path, fix="prepare larger patches or lower the stage's patch_size")

    def __len__(self) -> int:
        return self.length

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handle": None, "_datasets": ()}  # each worker opens its own handle

    def __getitem__(self, key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        index, seed = key
        if self._handle is None:
            # No chunk cache: every read is one random patch, never read twice in a row.
            self._handle = h5py.File(self.path, "r", rdcc_nbytes=0)
            self._datasets = (self._handle[self.lr_key], self._handle["hr"])
        rng = np.random.default_rng(seed)
        top = int(rng.integers(self.lr_shape[0] - self.patch + 1))
        left = int(rng.integers(self.lr_shape[1] - self.patch + 1))
        lr, hr = self._datasets[0][index], self._datasets[1][index]
        return crop_pair(lr, hr, self.scale, self.patch, top, left, int(rng.integers(8)))


def collate_uint8(samples: Sequence[tuple[np.ndarray, ...]]) -> tuple[torch.Tensor, ...]:
    """Stack HWC uint8 arrays into NHWC tensors with numpy, straight into shared memory inside a
    DataLoader worker (no further copy on the way to the training process). torch.stack would do
    the same but runs its copy on several threads, which stalls when the CPUs are busy."""
    in_worker = get_worker_info() is not None
    out = []
    for parts in zip(*samples):
        batch = torch.empty((len(parts), *parts[0].shape), dtype=torch.uint8)
        if in_worker:
            batch.share_memory_()
        np.stack(parts, out=batch.numpy())
        out.append(batch)
    return tuple(out)


class ShardedSampler(Sampler):
    """(index, crop seed) pairs of this rank's share of every global batch, like DistributedSampler.

    The global sequence (``iters`` batches of ``batch_size``) is a pure function of the epoch's
    seed, the same on every rank, so a run resumes exactly and the ranks' shares add up to the
    single-process batches; call :meth:`set_epoch` with each epoch's seed before iterating.
    """

    def __init__(self, length: int, batch_size: int, iters: int, seed: Sequence[int] = (0,),
                 rank: int = 0, world_size: int = 1) -> None:
        self.share = shard_size(batch_size, rank, world_size)
        self.length, self.batch_size, self.iters, self.rank = length, batch_size, iters, rank
        self.set_epoch(seed)

    def set_epoch(self, seed: Sequence[int]) -> None:
        self.seed = list(seed)

    def __len__(self) -> int:
        return self.iters * self.share

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        count = self.iters * self.batch_size
        indices = rng.integers(self.length, size=count).reshape(self.iters, self.batch_size)
        seeds = rng.integers(2**63 - 1, size=count).reshape(self.iters, self.batch_size)
        mine = slice(self.rank * self.share, (self.rank + 1) * self.share)
        return iter(zip(indices[:, mine].ravel().tolist(), seeds[:, mine].ravel().tolist()))


class HDF5Source:
    """Patches from an 'elsr prepare' HDF5 file, read by DataLoader workers (``workers`` processes,
    each with its own file handle; 0 reads in the calling process)."""

    def __init__(self, path: str | Path, workers: int = 2, pin_memory: bool = False) -> None:
        self.path, self.workers, self.pin_memory = Path(path), workers, pin_memory

    def num_patches(self, scale: int, patch: int) -> int:
        return len(HDF5Patches(self.path, scale, patch))

    def fingerprint(self) -> str:
        """Digest of the file's layout, attributes and first and last patches (not of its path)."""
        try:
            with h5py.File(self.path, "r") as handle:
                parts = [self.path.stat().st_size,
                         sorted((k, handle[k].shape, str(handle[k].dtype)) for k in handle),
                         sorted((k, str(v)) for k, v in handle.attrs.items() if k != "sources")]
                if "hr" in handle and len(handle["hr"]):
                    parts.append(hashlib.sha256(handle["hr"][0].tobytes() + handle["hr"][-1].tobytes()).hexdigest())
        except OSError as exc:
            raise ElsrError("not a readable HDF5 file (corrupt, truncated or another format)", path=self.path,
                            fix="rebuild it with 'elsr prepare'") from exc
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]

    def loader(self, scale: int, patch: int, batch_size: int, iters: int, seed: Sequence[int],
               rank: int = 0, world_size: int = 1) -> DataLoader:
        """The DataLoader of one epoch: uint8 NHWC batches of this rank's share."""
        dataset = HDF5Patches(self.path, scale, patch)
        sampler = ShardedSampler(len(dataset), batch_size, iters, seed, rank, world_size)
        return DataLoader(dataset, batch_size=sampler.share, sampler=sampler, num_workers=self.workers,
                          collate_fn=collate_uint8, drop_last=True, pin_memory=self.pin_memory,
                          prefetch_factor=4 if self.workers else None)

    def batches(self, scale: int, patch: int, batch_size: int, iters: int, seed: Sequence[int],
                rank: int = 0, world_size: int = 1, uint8: bool = False) -> Iterator[Batch]:
        """As :meth:`FolderSource.batches`: this rank's share of ``iters`` global batches."""
        for lr, hr in self.loader(scale, patch, batch_size, iters, seed, rank, world_size):
            yield (lr, hr) if uint8 else (to_float(lr), to_float(hr))


TrainingSource = FolderSource | HDF5Source   # what open_training_data gives: both have batches() and fingerprint()


def open_training_data(path: str | Path, convert: bool = False, workers: int = 2,
                       pin_memory: bool = False) -> TrainingSource:
    """An image folder (searched recursively) or an HDF5 patch file (``pin_memory`` for CUDA)."""
    path = Path(path)
    if not path.exists():
        raise ElsrError("no such training data", path=path, fix="pass an image folder or an .h5 file")
    if path.is_file() and path.suffix.lower() in HDF5_SUFFIXES:
        return HDF5Source(path, workers, pin_memory)
    return FolderSource(path, convert)
