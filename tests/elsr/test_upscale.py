import numpy as np

from elsr.checkpoint import save_checkpoint
from elsr.cli import main
from elsr.imageio import read_image
from tests.helpers import image_folder, nearest_neighbour_elsr


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
