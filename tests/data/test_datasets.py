import h5py
import numpy as np
import pytest
import torch

from elsr.data.bicubic import downscale
from elsr.data.datasets import (FolderSource, HDF5Patches, HDF5Source, ShardedSampler, augment, collate_uint8,
                                crop_pair, open_training_data, to_float)
from elsr.data.prepare import PrepareConfig, prepare
from elsr.data.validation import ValidationSet
from elsr.errors import ElsrError
from tests.helpers import image_folder, smooth_image, write_png


@pytest.mark.parametrize("mode", range(8))
def test_augment_keeps_lr_and_hr_aligned(mode, rng):
    lr = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    hr = np.kron(lr, np.ones((4, 4, 1), dtype=np.uint8))  # each LR pixel is a 4x4 HR block
    a, b = augment(lr, hr, mode)
    np.testing.assert_array_equal(np.kron(a, np.ones((4, 4, 1), dtype=np.uint8)), b)


def test_the_eight_modes_are_distinct(rng):
    img = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    outs = {augment(img, img, m)[0].tobytes() for m in range(8)}
    assert len(outs) == 8


def test_crop_pair_alignment(rng):
    lr = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    hr = np.kron(lr, np.ones((2, 2, 1), dtype=np.uint8))
    a, b = crop_pair(lr, hr, 2, 8, 5, 7, 0)
    np.testing.assert_array_equal(a, lr[5:13, 7:15])
    np.testing.assert_array_equal(np.kron(a, np.ones((2, 2, 1), dtype=np.uint8)), b)


def assert_batch_pairs_align(lr_batch, hr_batch, scale):
    """The MATLAB-bicubic downscale of each HR patch matches its LR patch away from the border."""
    for lr_t, hr_t in zip(lr_batch, hr_batch):
        lr = (lr_t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        hr = (hr_t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        ours = downscale(hr, scale).astype(int)[2:-2, 2:-2]
        assert np.abs(ours - lr.astype(int)[2:-2, 2:-2]).mean() < 1.0


def test_folder_source_batches(tmp_path, rng):
    source = FolderSource(image_folder(tmp_path / "imgs", rng, count=3, size=(70, 90)))
    batches = list(source.batches(4, 10, 5, 3, (0, 1, 2)))
    assert len(batches) == 3
    lr, hr = batches[0]
    assert lr.shape == (5, 3, 10, 10) and hr.shape == (5, 3, 40, 40) and lr.dtype == torch.float32
    assert 0 <= lr.min() and lr.max() <= 1
    assert_batch_pairs_align(lr, hr, 4)
    again = next(iter(source.batches(4, 10, 5, 3, (0, 1, 2))))
    torch.testing.assert_close(again[0], lr)  # a pure function of the seed
    other = next(iter(source.batches(4, 10, 5, 3, (0, 1, 3))))
    assert not torch.equal(other[0], lr)


def test_folder_source_errors(tmp_path, rng):
    with pytest.raises(ElsrError, match="no images"):
        FolderSource((tmp_path / "empty").mkdir() or tmp_path / "empty")
    source = FolderSource(image_folder(tmp_path / "small", rng, count=1, size=(40, 40)))
    with pytest.raises(ElsrError, match="large enough"):
        source.num_patches(4, 16)


@pytest.fixture
def h5_file(tmp_path, rng):
    folder = image_folder(tmp_path / "imgs", rng, count=2, size=(96, 96))
    out = tmp_path / "p.h5"
    prepare(PrepareConfig(sources=[folder], out=out, scales=(4, 2), patch_size=48, stride=48))
    return out


def test_hdf5_source_reads_aligned_random_crops(h5_file):
    source = open_training_data(h5_file, workers=0)
    assert isinstance(source, HDF5Source)
    assert source.num_patches(4, 8) == 8
    batches = list(source.batches(4, 8, 4, 2, (0, 0, 0)))
    assert len(batches) == 2 and batches[0][0].shape == (4, 3, 8, 8) and batches[0][1].shape == (4, 3, 32, 32)
    x2 = next(iter(source.batches(2, 16, 3, 1, (0, 0, 0))))
    assert x2[0].shape == (3, 3, 16, 16) and x2[1].shape == (3, 3, 32, 32)
    again = list(source.batches(4, 8, 4, 2, (0, 0, 0)))
    torch.testing.assert_close(again[1][1], batches[1][1])


def test_hdf5_crops_are_aligned(h5_file):
    dataset = HDF5Patches(h5_file, 4, 12)
    for seed in range(5):
        lr, hr = dataset[(seed % len(dataset), seed)]
        assert lr.dtype == np.uint8 and lr.shape == (12, 12, 3) and hr.shape == (48, 48, 3)
        lr, hr = collate_uint8([(lr, hr)])
        assert_batch_pairs_align(to_float(lr), to_float(hr), 4)


def test_hdf5_items_are_seeded_crops_of_the_stored_patches(h5_file, rng):
    dataset = HDF5Patches(h5_file, 2, 10)
    with h5py.File(h5_file, "r") as f:
        for index, seed in [(0, 1), (3, 2), (7, 99)]:
            lr, hr = dataset[(index, seed)]
            draws = np.random.default_rng(seed)
            top, left, mode = (int(draws.integers(24 - 10 + 1)), int(draws.integers(24 - 10 + 1)),
                               int(draws.integers(8)))
            a, b = crop_pair(f["lr_x2"][index], f["hr"][index], 2, 10, top, left, mode)
            np.testing.assert_array_equal(lr, a)
            np.testing.assert_array_equal(hr, b)


def test_hdf5_with_workers_opens_file_per_worker(h5_file):
    batches = list(HDF5Source(h5_file, workers=2).batches(4, 8, 4, 2, (0, 0, 0)))
    reference = list(HDF5Source(h5_file, workers=0).batches(4, 8, 4, 2, (0, 0, 0)))
    torch.testing.assert_close(batches[1][0], reference[1][0])


def test_hdf5_errors(tmp_path, h5_file):
    with pytest.raises(ElsrError, match="file stores 12px"):
        HDF5Patches(h5_file, 4, 16)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(ElsrError, match="no 'hr' dataset"):
        HDF5Patches(foreign, 4, 4)
    only_hr = tmp_path / "only_hr.h5"
    with h5py.File(only_hr, "w") as f:
        f["hr"] = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(ElsrError, match="no 'lr_x4' or 'lr'"):
        HDF5Patches(only_hr, 4, 4)
    truncated = tmp_path / "cut.h5"
    truncated.write_bytes(h5_file.read_bytes()[:2000])
    with pytest.raises(ElsrError, match="not a readable HDF5"):
        HDF5Patches(truncated, 4, 4)
    classic = tmp_path / "classic.h5"
    with h5py.File(classic, "w") as f:
        f["hr"] = np.zeros((2, 16, 16, 3), np.uint8)
        f["lr"] = np.zeros((2, 8, 8, 3), np.uint8)
    assert len(HDF5Patches(classic, 2, 4)) == 2
    with pytest.raises(ElsrError, match="not x4"):
        HDF5Patches(classic, 4, 4)


def test_validation_set_mod_crops_and_scores_bicubic(tmp_path, rng):
    write_png(tmp_path / "v" / "a.png", smooth_image(rng, 50, 63))
    val = ValidationSet(tmp_path / "v")
    item = val.for_scale(4)[0]
    assert item.hr.shape == (48, 60, 3) and item.lr.shape == (12, 15, 3)
    scores = val.bicubic_scores(4)
    assert set(scores) == {"psnr_y", "psnr_rgb", "ssim_y", "ssim_rgb"} and 15 < scores["psnr_y"] < 60


@pytest.mark.parametrize("kind", ["folder", "hdf5"])
def test_rank_shares_add_up_to_the_single_process_batches(tmp_path, rng, h5_file, kind):
    """Every rank draws the same global batch and keeps its own contiguous share (DDP's premise)."""
    if kind == "folder":
        source = FolderSource(image_folder(tmp_path / "imgs", rng, count=3, size=(70, 90)))
    else:
        source = HDF5Source(h5_file, workers=0)
    args = (4, 8, 6, 3, (1, 2, 3))
    whole = list(source.batches(*args))
    for world in (2, 3):
        shares = [list(source.batches(*args, rank=r, world_size=world)) for r in range(world)]
        for step, (lr, hr) in enumerate(whole):
            assert all(s[step][0].shape[0] == 6 // world for s in shares)
            torch.testing.assert_close(torch.cat([s[step][0] for s in shares]), lr, rtol=0, atol=0)
            torch.testing.assert_close(torch.cat([s[step][1] for s in shares]), hr, rtol=0, atol=0)
    raw_lr, raw_hr = next(iter(source.batches(*args, uint8=True)))
    assert raw_lr.dtype == torch.uint8 and raw_lr.shape == (6, 8, 8, 3) and raw_hr.shape == (6, 32, 32, 3)
    torch.testing.assert_close(to_float(raw_lr), whole[0][0], rtol=0, atol=0)
    with pytest.raises(ElsrError, match="cannot be split evenly over 4"):
        next(iter(source.batches(*args, rank=0, world_size=4)))


def test_sharded_sampler_set_epoch_and_length():
    sampler = ShardedSampler(length=50, batch_size=4, iters=3, seed=(0, 0, 0), rank=1, world_size=2)
    assert len(sampler) == 6 and len(list(sampler)) == 6
    first = list(sampler)
    assert list(sampler) == first  # a pure function of the epoch's seed
    sampler.set_epoch((0, 0, 1))
    assert list(sampler) != first
    full = list(ShardedSampler(50, 4, 3, (0, 0, 0)))
    assert first == [full[i] for i in (2, 3, 6, 7, 10, 11)]


def test_fingerprints_follow_the_data(tmp_path, rng, h5_file):
    folder = image_folder(tmp_path / "a", rng, count=2, size=(40, 40))
    assert FolderSource(folder).fingerprint() == FolderSource(folder).fingerprint()
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in folder.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    assert FolderSource(copy).fingerprint() == FolderSource(folder).fingerprint()  # the path is not part of it
    write_png(copy / "img1.png", smooth_image(rng, 40, 40))
    assert FolderSource(copy).fingerprint() != FolderSource(folder).fingerprint()
    moved = tmp_path / "moved.h5"
    moved.write_bytes(h5_file.read_bytes())
    assert HDF5Source(moved).fingerprint() == HDF5Source(h5_file).fingerprint()
    with h5py.File(moved, "r+") as f:
        f["hr"][-1] = 0
    assert HDF5Source(moved).fingerprint() != HDF5Source(h5_file).fingerprint()
