"""Tests of ``elsr prepare``: HDF5 layout, LR/HR alignment, REDS frames, videos and errors."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from elsr.data.bicubic import downscale
from elsr.data.prepare import PrepareConfig, prepare
from elsr.errors import ElsrError
from elsr.io.images import mod_crop
from tests.helpers import read_video, smooth_image, write_png, write_video


def n_windows(h: int, w: int, patch: int, stride: int) -> int:
    return ((h - patch) // stride + 1) * ((w - patch) // stride + 1)


@pytest.fixture
def image_folder(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, list[np.ndarray]]:
    """Two images in nested folders (one not a multiple of 4), plus one too small for a patch."""
    folder = tmp_path / "imgs"
    images = [smooth_image(rng, 70, 99), smooth_image(rng, 64, 64)]
    write_png(folder / "a.png", images[0])
    write_png(folder / "sub" / "b.png", images[1])
    write_png(folder / "sub" / "c_tiny.png", smooth_image(rng, 20, 40))
    return folder, images


def test_image_folder_layout_and_attributes(tmp_path, image_folder):
    folder, images = image_folder
    out = tmp_path / "out" / "train.h5"
    summary = prepare(PrepareConfig(sources=[folder], out=out, scales=(4, 2), patch_size=32, stride=16,
                                    compression="gzip"))
    # a.png is mod-cropped to 68x96; b.png 64x64; the tiny one is skipped.
    expected = n_windows(68, 96, 32, 16) + n_windows(64, 64, 32, 16)
    assert summary["num_patches"] == expected
    assert summary["num_images"] == 2 and summary["skipped"] == 1
    assert summary["bytes"] == out.stat().st_size > 0
    with h5py.File(out, "r") as f:
        assert set(f.keys()) == {"hr", "lr", "lr_x2", "lr_x4"}
        assert f["hr"].shape == (expected, 32, 32, 3) and f["hr"].dtype == np.uint8
        assert f["lr_x4"].shape == (expected, 8, 8, 3)
        assert f["lr_x2"].shape == (expected, 16, 16, 3)
        for name in ("hr", "lr_x2", "lr_x4"):
            assert f[name].chunks[0] == 1 and f[name].maxshape[0] is None
            assert f[name].compression == "gzip"
        a = f.attrs
        assert a["format"] == "elsr-patches" and a["format_version"] == 1
        assert list(a["scales"]) == [4, 2]
        assert (a["patch_size"], a["stride"], a["num_patches"], a["num_images"]) == (32, 16, expected, 2)
        assert a["layout"] == "NHWC" and a["channel_order"] == "RGB"
        assert json.loads(a["sources"]) == [str(folder)]
        assert a["degradation"] == "matlab-bicubic-antialias"
        assert a["created_by"].startswith("elsr prepare")
        # The first patch is the top-left corner of the first image (RGB order kept).
        np.testing.assert_array_equal(f["hr"][0], images[0][:32, :32])
    assert [p.name for p in out.parent.iterdir()] == ["train.h5"]  # no temporary left behind


def test_lr_patches_align_with_whole_image_downscale(tmp_path, rng):
    hr = smooth_image(rng, 48, 72)
    write_png(tmp_path / "img" / "x.png", hr)
    out = tmp_path / "p.h5"
    prepare(PrepareConfig(sources=[tmp_path / "img"], out=out, scales=(2, 4), patch_size=24, stride=12))
    hr = mod_crop(hr, 4)
    lrs = {s: downscale(hr, s) for s in (2, 4)}
    positions = [(y, x) for y in range(0, 48 - 24 + 1, 12) for x in range(0, 72 - 24 + 1, 12)]
    with h5py.File(out, "r") as f:
        assert f["hr"].shape[0] == len(positions)
        assert f["lr"] == f["lr_x2"]  # same object: a hard link to the first scale
        assert isinstance(f.get("lr", getlink=True), h5py.HardLink)
        for i, (y, x) in enumerate(positions):
            np.testing.assert_array_equal(f["hr"][i], hr[y:y + 24, x:x + 24])
            for s, lr in lrs.items():
                p = 24 // s
                np.testing.assert_array_equal(f[f"lr_x{s}"][i], lr[y // s:y // s + p, x // s:x // s + p])


def make_reds(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """REDS-like train_sharp/ and train_sharp_bicubic/X4/ with 2 clips x 2 frames of 32x48."""
    hr_root, lr_root = tmp_path / "train_sharp", tmp_path / "train_sharp_bicubic" / "X4"
    lrs = {}
    for clip in ("000", "001"):
        for frame in ("00000000", "00000001"):
            hr = smooth_image(rng, 32, 48)
            write_png(hr_root / clip / f"{frame}.png", hr)
            lrs[f"{clip}/{frame}"] = downscale(hr, 4)
            write_png(lr_root / clip / f"{frame}.png", lrs[f"{clip}/{frame}"])
    return hr_root, lr_root, lrs


def test_reds_official_lr_frames_are_used(tmp_path, rng):
    hr_root, lr_root, lrs = make_reds(tmp_path, rng)
    perturbed = 255 - lrs["001/00000000"]  # tells the official frame from our own downscale
    write_png(lr_root / "001" / "00000000.png", perturbed)
    out = tmp_path / "reds.h5"
    summary = prepare(PrepareConfig(sources=[hr_root], out=out, patch_size=32, stride=32, reds_lr=lr_root))
    assert summary["num_patches"] == 4 and summary["num_images"] == 4
    with h5py.File(out, "r") as f:
        assert f.attrs["degradation"] == "reds-official-bicubic-x4"
        assert list(f.attrs["scales"]) == [4]
        assert f["lr"] == f["lr_x4"]
        # Frames come sorted: 000/0, 000/1, 001/0, 001/1; one 32x32 patch each (at x = 0).
        np.testing.assert_array_equal(f["lr_x4"][2], perturbed[:8, :8])
        np.testing.assert_array_equal(f["lr_x4"][0], lrs["000/00000000"][:8, :8])
    # A single clip folder with the matching LR clip folder, or the X4 root, also pairs up.
    for lr_dir in (lr_root / "001", lr_root):
        out2 = tmp_path / f"clip_{lr_dir.name}.h5"
        prepare(PrepareConfig(sources=[hr_root / "001"], out=out2, patch_size=32, stride=32, reds_lr=lr_dir))
        with h5py.File(out2, "r") as f:
            np.testing.assert_array_equal(f["lr"][0], perturbed[:8, :8])


def test_reds_missing_or_wrong_size_lr_frame(tmp_path, rng):
    hr_root, lr_root, _ = make_reds(tmp_path, rng)
    cfg = PrepareConfig(sources=[hr_root], out=tmp_path / "reds.h5", patch_size=32, stride=32, reds_lr=lr_root)
    (lr_root / "001" / "00000001.png").unlink()
    with pytest.raises(ElsrError, match="001/00000001.png.*no official LR frame"):
        prepare(cfg)
    write_png(lr_root / "001" / "00000001.png", smooth_image(rng, 16, 16))
    with pytest.raises(ElsrError, match="16x16, expected 8x12"):
        prepare(cfg)
    assert not cfg.out.exists()
    with pytest.raises(ElsrError, match="--scales 4"):
        prepare(PrepareConfig(sources=[hr_root], out=cfg.out, scales=(2,), patch_size=32, stride=32,
                              reds_lr=lr_root))


def test_video_file(tmp_path, rng):
    video = write_video(tmp_path / "clip.avi", [smooth_image(rng, 64, 96) for _ in range(5)])
    frames = read_video(video)
    assert len(frames) == 5
    per_frame = n_windows(64, 96, 32, 32)
    out = tmp_path / "video.h5"
    summary = prepare(PrepareConfig(sources=[video], out=out, patch_size=32, stride=32, frame_step=2))
    assert summary["num_images"] == 3 and summary["num_patches"] == 3 * per_frame
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["hr"][0], frames[0][:32, :32])
        np.testing.assert_array_equal(f["hr"][per_frame], frames[2][:32, :32])


def test_unreadable_video(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(ElsrError, match="bad.mp4"):
        prepare(PrepareConfig(sources=[bad], out=tmp_path / "o.h5"))


def test_mixed_sources_and_streaming_batches(tmp_path, rng, monkeypatch):
    monkeypatch.setattr("elsr.data.prepare.BATCH_PATCHES", 5)  # several appends per image
    image = write_png(tmp_path / "single.png", smooth_image(rng, 64, 64))
    folder = tmp_path / "more"
    write_png(folder / "x.png", smooth_image(rng, 64, 80))
    out = tmp_path / "mixed.h5"
    summary = prepare(PrepareConfig(sources=[image, folder], out=out, patch_size=16, stride=16))
    assert summary["num_patches"] == 16 + 20
    with h5py.File(out, "r") as f:
        assert f["hr"].shape[0] == f["lr"].shape[0] == 36
        assert json.loads(f.attrs["sources"]) == [str(image), str(folder)]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"scales": (8,)}, "unsupported scale"),
        ({"scales": ()}, "unsupported scale"),
        ({"scales": (3,), "patch_size": 30, "stride": 16}, "stride 16 is not divisible"),
        ({"scales": (3, 4), "patch_size": 30, "stride": 12}, r"patch size 30 is not divisible by scale\(s\) \[4\]"),
        ({"scales": (2, 4), "patch_size": 32, "stride": 6}, r"stride 6 .*multiple of 4"),
        ({"patch_size": 0}, "patch size must be positive"),
        ({"stride": -4}, "stride must be positive"),
        ({"frame_step": 0}, "frame step"),
        ({"compression": "lzf"}, "compression"),
    ],
)
def test_bad_options(tmp_path, image_folder, overrides, message):
    folder, _ = image_folder
    cfg = PrepareConfig(sources=[folder], out=tmp_path / "o.h5", **overrides)
    with pytest.raises(ElsrError, match=message):
        prepare(cfg)
    assert not cfg.out.exists()


def test_bad_sources(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    out = tmp_path / "o.h5"
    with pytest.raises(ElsrError, match="no images or videos"):
        prepare(PrepareConfig(sources=[empty], out=out))
    with pytest.raises(ElsrError, match="no such file or folder"):
        prepare(PrepareConfig(sources=[tmp_path / "missing"], out=out))
    with pytest.raises(ElsrError, match="unsupported file type"):
        prepare(PrepareConfig(sources=[empty / "notes.txt"], out=out))
    assert not out.exists()


def test_corrupt_png_leaves_no_file(tmp_path, rng):
    folder = tmp_path / "imgs"
    write_png(folder / "a.png", smooth_image(rng, 64, 64))  # written before the failure
    (folder / "b.png").write_bytes(b"\x89PNG garbage" + bytes(100))
    out = tmp_path / "o.h5"
    with pytest.raises(ElsrError, match="b.png.*cannot decode"):
        prepare(PrepareConfig(sources=[folder], out=out, patch_size=32, stride=32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]  # neither out nor its temporary


def test_nothing_written(tmp_path, rng):
    write_png(tmp_path / "imgs" / "small.png", smooth_image(rng, 40, 40))
    out = tmp_path / "o.h5"
    with pytest.raises(ElsrError, match="no patches written"):
        prepare(PrepareConfig(sources=[tmp_path / "imgs"], out=out, patch_size=64, stride=32))
    assert not out.exists()


def test_existing_output_needs_overwrite(tmp_path, image_folder):
    folder, _ = image_folder
    out = tmp_path / "o.h5"
    out.write_bytes(b"old")
    cfg = PrepareConfig(sources=[folder], out=out, patch_size=32, stride=32)
    with pytest.raises(ElsrError, match="pass --overwrite"):
        prepare(cfg)
    assert out.read_bytes() == b"old"
    cfg.overwrite = True
    assert prepare(cfg)["num_patches"] > 0
    with h5py.File(out, "r") as f:
        assert f.attrs["format"] == "elsr-patches"


def test_scales_3_and_4_crop_to_common_multiple(tmp_path, rng):
    hr = smooth_image(rng, 50, 70)  # mod-cropped to 48x60, a multiple of both 3 and 4
    write_png(tmp_path / "img" / "x.png", hr)
    out = tmp_path / "p.h5"
    summary = prepare(PrepareConfig(sources=[tmp_path / "img"], out=out, scales=(3, 4), patch_size=24, stride=12))
    assert summary["num_patches"] == n_windows(48, 60, 24, 12)
    with h5py.File(out, "r") as f:
        last = f["lr_x3"][-1]
        np.testing.assert_array_equal(last, downscale(hr[:48, :60], 3)[8:16, 12:20])


def test_memory_stays_flat_whatever_the_number_of_frames(tmp_path, rng, monkeypatch):
    """Frames are streamed through one bounded buffer: 5x the frames, the same peak (numpy memory
    as tracemalloc sees it); a writer that kept frames or patches would grow by ~1 MB here."""
    import tracemalloc

    from elsr.data import prepare as prepare_module
    monkeypatch.setattr(prepare_module, "BUFFER_BYTES", 100_000)
    frame = smooth_image(rng, 96, 128)
    for count in (6, 30):
        for i in range(count):
            write_png(tmp_path / f"clips{count}" / "000" / f"{i:08d}.png", np.roll(frame, 3 * i, axis=1))
    peaks = {}
    for count in (6, 30):
        tracemalloc.start()
        summary = prepare(PrepareConfig(sources=[tmp_path / f"clips{count}"], out=tmp_path / f"{count}.h5",
                                        scales=(4, 2), patch_size=32, stride=16))
        peaks[count] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert summary["num_patches"] == count * n_windows(96, 128, 32, 16)
    assert peaks[30] < peaks[6] * 1.1 + 64_000, peaks
    with h5py.File(tmp_path / "30.h5", "r") as f:  # every appended batch landed where it belongs
        np.testing.assert_array_equal(f["hr"][-1], np.roll(frame, 3 * 29, axis=1)[64:96, 96:128])


def test_buffer_is_bounded_in_bytes(tmp_path, monkeypatch):
    from elsr.data import prepare as prepare_module
    monkeypatch.setattr(prepare_module, "BUFFER_BYTES", 5_000_000)
    with h5py.File(tmp_path / "x.h5", "w") as h5:
        writer = prepare_module._PatchWriter(h5, 512, (4, 2), "none")
        assert writer.patch_bytes == 3 * (512**2 + 128**2 + 256**2)
        assert writer.capacity == 4 and sum(b.nbytes for b in writer.buffers.values()) <= 5_000_000
        small = prepare_module._PatchWriter(h5.create_group("g"), 16, (4,), "none")
        assert small.capacity == prepare_module.BATCH_PATCHES


def test_progress_log_gives_rate_and_eta(caplog, monkeypatch):
    import logging

    from elsr.data import prepare as prepare_module
    clock = iter([0.0, 100.0, 110.0])
    monkeypatch.setattr(prepare_module.time, "monotonic", lambda: next(clock))
    progress = prepare_module._ProgressLog(total=1000, enabled=True)

    class Writer:
        total, bytes_written = 40, 3 * 2**30
    with caplog.at_level(logging.INFO):
        progress.update(200, Writer())  # at 100 s: 2 images/s, 800 left -> 400 s
        progress.update(210, Writer())  # 10 s later: too soon for another line
    assert caplog.text.count("images/s") == 1
    assert "200/1000 images (20.0%), 2.00 images/s, 40 patches, 3.0 GiB written, ETA 0:06:40" in caplog.text
