import numpy as np
import pytest
import torch

from elsr.cli.main import main
from elsr.io.images import read_image
from elsr.model.checkpoint import save_checkpoint
from elsr.model.network import ELSR, ModelConfig
from tests.helpers import (decoded_frames, flat_frames, image_folder, nearest_neighbour_elsr, smooth_image,
                           stream_packets, write_clip, write_png, write_video)


def test_upscale_folder_keeps_names_and_is_exact(tmp_path, rng):
    save_checkpoint(tmp_path / "nn.pt", nearest_neighbour_elsr(3))
    src = image_folder(tmp_path / "in", rng, 2, (20, 25))
    (src / "sub").mkdir()
    image_folder(src / "sub", rng, 1, (10, 11))
    assert main(["upscale", "--model", str(tmp_path / "nn.pt"), "--input", str(src),
                 "--output", str(tmp_path / "out")]) == 0
    outputs = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert outputs == ["img0.png", "img1.png", "sub/img0.png"]
    lr = read_image(src / "img1.png")
    sr = read_image(tmp_path / "out" / "img1.png")
    np.testing.assert_array_equal(sr, np.repeat(np.repeat(lr, 3, axis=0), 3, axis=1))


def test_upscale_single_image(tmp_path, rng):
    save_checkpoint(tmp_path / "nn.pt", nearest_neighbour_elsr(2))
    src = image_folder(tmp_path / "in", rng, 1, (9, 13)) / "img0.png"
    assert main(["upscale", "--model", str(tmp_path / "nn.pt"), "--input", str(src),
                 "--output", str(tmp_path / "big.png")]) == 0
    assert read_image(tmp_path / "big.png").shape == (18, 26, 3)


def test_video_to_video_to_frames_and_back(tmp_path, rng):
    save_checkpoint(tmp_path / "nn.pt", nearest_neighbour_elsr(4))
    clip = write_video(tmp_path / "clip.avi", [smooth_image(rng, 24, 32) for _ in range(5)])  # MJPG, from OpenCV
    model = ["--model", str(tmp_path / "nn.pt")]
    assert main(["upscale", *model, "--input", str(clip), "--output", str(tmp_path / "big.mp4")]) == 0
    frames = decoded_frames(tmp_path / "big.mp4")
    assert len(frames) == 5 and frames[0][1].shape == (96, 128, 3)
    assert main(["upscale", *model, "--input", str(clip), "--output", str(tmp_path / "frames")]) == 0
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"{i:08d}.png" for i in range(5)]
    assert main(["upscale", *model, "--input", str(tmp_path / "frames"), "--output", str(tmp_path / "x16.mkv"),
                 "--fps", "12.5"]) == 0
    frames = decoded_frames(tmp_path / "x16.mkv")
    assert frames[0][1].shape == (384, 512, 3) and [t for t, _, _ in frames] == [0, 0.08, 0.16, 0.24, 0.32]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary files left"


@pytest.mark.parametrize("suffix, audio", [(".mp4", "aac"), (".mkv", "libopus")])
def test_video_keeps_audio_timestamps_and_frame_order(tmp_path, suffix, audio, capsys):
    """Frame i of the clip is grey level 16 + 8i, and the nearest-neighbour model keeps it: the output's frames,
    through the threaded pipeline, must come out in the same order at the same times; audio byte for byte."""
    save_checkpoint(tmp_path / "nn.pt", nearest_neighbour_elsr(2))
    times = [0, 33, 100, 133, 167, 300, 333, 367, 400, 433, 467, 600, 633, 667, 700, 733, 767, 800, 833, 867]
    clip = write_clip(tmp_path / f"clip{suffix}", flat_frames(len(times)), fps=30, pts_ms=times, audio=audio)
    out = tmp_path / f"big{suffix}"
    assert main(["upscale", "--model", str(tmp_path / "nn.pt"), "--input", str(clip), "--output", str(out),
                 "--no-progress"]) == 0
    frames = decoded_frames(out)
    levels = np.array([f.mean() for _, f, _ in frames])
    assert len(levels) == len(times) and np.abs(levels - (16 + 8 * np.arange(len(times)))).max() < 4  # 8 apart
    assert [t for t, _, _ in frames] == pytest.approx([ms / 1000 for ms in times], abs=1e-3)
    assert frames[0][1].shape == (48, 64, 3)
    assert stream_packets(out, "audio") == stream_packets(clip, "audio")
    assert f"{len(times)} frames in " in capsys.readouterr().out   # the rate line, with the bar off too


def test_output_that_is_the_input_is_refused(tmp_path, capsys):
    save_checkpoint(tmp_path / "nn.pt", nearest_neighbour_elsr(2))
    clip = write_clip(tmp_path / "clip.mp4", flat_frames(2))
    before = clip.read_bytes()
    assert main(["upscale", "--model", str(tmp_path / "nn.pt"), "--input", str(clip), "--output",
                 str(tmp_path / "." / "clip.mp4"), "--overwrite"]) == 2
    assert "output is the input" in capsys.readouterr().err and clip.read_bytes() == before


def test_compare_puts_bicubic_beside_the_model(tmp_path, rng):
    save_checkpoint(tmp_path / "nn.pt", nearest_neighbour_elsr(2))
    src = image_folder(tmp_path / "in", rng, 1, (10, 12)) / "img0.png"
    assert main(["upscale", "--model", str(tmp_path / "nn.pt"), "--input", str(src), "--compare",
                 "--output", str(tmp_path / "cmp.png")]) == 0
    assert read_image(tmp_path / "cmp.png").shape == (20, 48, 3)


def test_compare_labels_each_half(tmp_path, rng):
    """Each half says what it is: white text on a dark box in its top-left corner, the rest untouched."""
    save_checkpoint(tmp_path / "nn.pt", nearest_neighbour_elsr(2))
    src = tmp_path / "in.png"
    lr = np.full((60, 200, 3), 128, np.uint8)
    write_png(src, lr)
    assert main(["upscale", "--model", str(tmp_path / "nn.pt"), "--input", str(src), "--compare",
                 "--output", str(tmp_path / "cmp.png")]) == 0
    out = read_image(tmp_path / "cmp.png")
    for x0 in (0, 400):   # the bicubic half and the model's half
        corner = out[:20, x0:x0 + 60]
        assert (corner == 0).any() and (corner == 255).any(), "no label"
        assert (out[60:, x0:x0 + 400] == 128).all()   # below the label: the picture itself


def test_streamed_tiles_equal_one_pass_with_and_without_compare(tmp_path, rng):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", ELSR(ModelConfig(scale=2)))
    src = tmp_path / "in.png"
    write_png(src, smooth_image(rng, 45, 70))
    for flags in ([], ["--compare"]):
        outputs = []
        for tile in ("0", "16"):
            out = tmp_path / f"out{tile}{len(flags)}.png"
            assert main(["upscale", "--model", str(tmp_path / "m.pt"), "--input", str(src), "--output", str(out),
                         "--tile", tile, *flags]) == 0
            outputs.append(read_image(out))
        assert outputs[0].shape == (90, 140 * (1 + len(flags)), 3)
        np.testing.assert_array_equal(outputs[0], outputs[1])


def test_non_empty_output_folder_is_refused(tmp_path, rng, capsys):
    save_checkpoint(tmp_path / "nn.pt", nearest_neighbour_elsr(2))
    src = image_folder(tmp_path / "in", rng, 2, (10, 12))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert main(["upscale", "--model", str(tmp_path / "nn.pt"), "--input", str(src),
                 "--output", str(tmp_path / "out")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_bundled_models_are_the_default_and_agree(tmp_path, rng):
    from elsr.model.checkpoint import load_model
    from elsr.pretrained import MODELS, pretrained
    from elsr.runtime.loaders import load_upscaler

    assert pretrained() == MODELS["x4-int8"] and all(p.is_file() for p in MODELS.values())
    model, ckpt = load_model(MODELS["x4"], scale=4)
    # quick at 4x its length, then the luma fine-tuning stage from those weights (MODEL_CARD.md)
    assert ckpt["meta"]["schedule"] == "luma" and "--weights" in ckpt["meta"]["command"]
    src = image_folder(tmp_path / "in", rng, 1, (30, 40)) / "img0.png"
    assert main(["upscale", "--input", str(src), "--output", str(tmp_path / "big.png")]) == 0
    int8 = read_image(tmp_path / "big.png")
    fp32 = load_upscaler(MODELS["x4-onnx"])(read_image(src))
    assert int8.shape == fp32.shape == (120, 160, 3)
    assert np.abs(int8.astype(int) - fp32.astype(int)).mean() < 2.0  # INT8 stays close to FP32
    ort_format = load_upscaler(MODELS["x4-int8-ort"])(read_image(src))
    np.testing.assert_array_equal(ort_format, int8)  # the ORT file is the same INT8 model
    x2, _ = load_model(MODELS["x2"], scale=2)
    assert x2.scale == 2 and load_upscaler(MODELS["x2"])(read_image(src)).shape == (60, 80, 3)


def test_interrupted_video_leaves_no_file(tmp_path, rng):
    from elsr.io.video import OutputVideo, to_yuv420p, video_writer

    with pytest.raises(KeyboardInterrupt):
        with video_writer(tmp_path / "v.mp4", OutputVideo(32, 24, 10)) as out:
            out.write(to_yuv420p(smooth_image(rng, 24, 32)))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_the_default_model_for_videos_is_the_fastest_bundled_one(tmp_path, monkeypatch):
    import dataclasses

    from elsr import pretrained
    from elsr.runtime import loaders

    names = pretrained.VIDEO_MODELS
    assert names[-1] == pretrained.DEFAULT   # the last resort is always bundled and runs everywhere
    bundled = [pretrained.MODELS[n] for n in names if n in pretrained.MODELS]
    assert loaders.fastest_bundled(names) == next(p for p in bundled if loaders.runtime_for(p).available())
    fast = tmp_path / "fast.tflite"
    fast.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))   # a stand-in read as a TFLite model by its bytes
    monkeypatch.setitem(pretrained.MODELS, names[0], fast)   # as when the uint8 TFLite model is bundled

    def litert(installed: bool):
        monkeypatch.setattr(loaders, "RUNTIMES", tuple(dataclasses.replace(r, available=lambda: installed)
                                                       if r.name == "tflite" else r for r in loaders.RUNTIMES))

    litert(True)
    assert loaders.fastest_bundled(names) == fast
    litert(False)   # without the tflite extra: the next one
    assert loaders.fastest_bundled(names) == pretrained.MODELS[names[1]]


@pytest.mark.parametrize("codec", ["hevc", "av1"])
def test_encoders_print_nothing_of_their_own(tmp_path, codec):
    """x265 and SVT-AV1 write banners to stderr themselves; the command keeps stderr for its own lines."""
    import subprocess
    import sys

    save_checkpoint(tmp_path / "nn.pt", nearest_neighbour_elsr(2))
    clip = write_clip(tmp_path / "clip.mp4", flat_frames(3))
    done = subprocess.run([sys.executable, "-m", "elsr", "upscale", "-q", "--no-progress", "--model",
                           str(tmp_path / "nn.pt"), "--input", str(clip), "--output", str(tmp_path / "big.mkv"),
                           "--codec", codec], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert [f.shape for _, f, _ in decoded_frames(tmp_path / "big.mkv")] == [(48, 64, 3)] * 3


@pytest.mark.parametrize("name", ["one.png", "one.JPG"])
def test_a_folder_given_an_image_name_is_refused(tmp_path, rng, capsys, name):
    save_checkpoint(tmp_path / "nn.pt", nearest_neighbour_elsr(2))
    src = image_folder(tmp_path / "in", rng, 2, (10, 12))
    assert main(["upscale", "--model", str(tmp_path / "nn.pt"), "--input", str(src),
                 "--output", str(tmp_path / name)]) == 2
    assert f"{name}: is an image file name, but --input in holds several pictures" in capsys.readouterr().err
    assert not (tmp_path / name).exists()
