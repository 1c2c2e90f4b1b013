import numpy as np
import torch

from elsr.cli.main import main
from elsr.io.images import read_image
from elsr.model.checkpoint import save_checkpoint
from elsr.model.network import ELSR, ModelConfig
from tests.helpers import image_folder, nearest_neighbour_elsr, read_video, smooth_image, write_png, write_video


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
    clip = write_video(tmp_path / "clip.avi", [smooth_image(rng, 24, 32) for _ in range(5)])
    model = ["--model", str(tmp_path / "nn.pt")]
    assert main(["upscale", *model, "--input", str(clip), "--output", str(tmp_path / "big.mp4")]) == 0
    frames = read_video(tmp_path / "big.mp4")
    assert len(frames) == 5 and frames[0].shape == (96, 128, 3)
    assert main(["upscale", *model, "--input", str(clip), "--output", str(tmp_path / "frames")]) == 0
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"{i:08d}.png" for i in range(5)]
    assert main(["upscale", *model, "--input", str(tmp_path / "frames"), "--output", str(tmp_path / "x16.avi")]) == 0
    assert read_video(tmp_path / "x16.avi")[0].shape == (384, 512, 3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary files left"


def test_compare_puts_bicubic_beside_the_model(tmp_path, rng):
    save_checkpoint(tmp_path / "nn.pt", nearest_neighbour_elsr(2))
    src = image_folder(tmp_path / "in", rng, 1, (10, 12)) / "img0.png"
    assert main(["upscale", "--model", str(tmp_path / "nn.pt"), "--input", str(src), "--compare",
                 "--output", str(tmp_path / "cmp.png")]) == 0
    assert read_image(tmp_path / "cmp.png").shape == (20, 48, 3)


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
    from elsr.io.video import video_writer

    try:
        with video_writer(tmp_path / "v.mp4", 10, 32, 24) as write:
            write(smooth_image(rng, 24, 32))
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert list(tmp_path.iterdir()) == []
