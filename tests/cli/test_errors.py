"""Bad input ends with one line naming the file and the problem, exit code 2, no traceback."""

import subprocess
import sys

import cv2
import h5py
import numpy as np
import pytest
import yaml

from elsr.cli.main import main
from elsr.model.checkpoint import save_checkpoint
from elsr.model.network import ELSR, ModelConfig
from tests.helpers import image_folder, smooth_image, tiny_schedule, write_png


def fails(capsys, argv, *expected):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("elsr: error: ")]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0], err
    assert "Traceback" not in err
    for text in expected:
        assert text in errors[0], err
    return errors[0]


@pytest.fixture
def folders(tmp_path, rng):
    return image_folder(tmp_path / "train", rng, 2, (64, 64)), image_folder(tmp_path / "val", rng, 1, (64, 64))


def train_args(tmp_path, train, val, *extra):
    return ["train", "--schedule", str(tiny_schedule(tmp_path / "t.yaml")), "--train", str(train),
            "--val", str(val), "--out", str(tmp_path / "run"), "--no-progress", *extra]


def test_empty_train_folder(tmp_path, capsys, folders):
    (tmp_path / "empty").mkdir()
    fails(capsys, train_args(tmp_path, tmp_path / "empty", folders[1]), "empty", "holds no images")


def test_missing_val_path(tmp_path, capsys, folders):
    fails(capsys, train_args(tmp_path, folders[0], tmp_path / "nowhere"), "nowhere", "does not exist")


def test_corrupt_png(tmp_path, capsys, folders):
    (folders[0] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    fails(capsys, train_args(tmp_path, folders[0], folders[1]), "broken.png", "cannot decode")


@pytest.mark.parametrize("kind", ["greyscale", "RGBA", "16-bit"])
def test_unusual_images_are_refused_then_converted_on_request(tmp_path, capsys, folders, rng, kind):
    rgb = smooth_image(rng, 64, 64)
    image = {"greyscale": rgb[:, :, 0], "RGBA": np.dstack([rgb, np.full((64, 64), 255, np.uint8)]),
             "16-bit": rgb.astype(np.uint16) * 257}[kind]
    cv2.imwrite(str(folders[1] / "odd.png"), image)
    fails(capsys, train_args(tmp_path, folders[0], folders[1]), "odd.png", kind, "--convert")
    assert main(train_args(tmp_path, folders[0], folders[1], "--convert", "--overwrite")) == 0


def test_hdf5_without_lr_hr(tmp_path, capsys, folders):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((4, 32, 32, 3), np.uint8)
    fails(capsys, train_args(tmp_path, path, folders[1]), "bad.h5", "no 'hr' dataset")


def test_unknown_schedule_key(tmp_path, capsys, folders):
    path = tiny_schedule(tmp_path / "s.yaml")
    spec = yaml.safe_load(path.read_text())
    spec["stages"][0]["warmup"] = 5
    path.write_text(yaml.safe_dump(spec))
    argv = train_args(tmp_path, *folders)
    argv[argv.index("--schedule") + 1] = str(path)
    fails(capsys, argv, "s.yaml", "unknown key 'warmup'")


def test_x2_checkpoint_as_x4_model(tmp_path, capsys, folders):
    save_checkpoint(tmp_path / "x2.pt", ELSR(ModelConfig(scale=2)))
    fails(capsys, ["eval", "--model", str(tmp_path / "x2.pt"), "--data", str(folders[1]), "--scale", "4"],
          "x2.pt", "x2 model but x4 was asked")


def test_pickle_checkpoint_is_refused(tmp_path, capsys, folders):
    import pickle
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": print}))
    fails(capsys, ["upscale", "--model", str(tmp_path / "evil.pt"), "--input", str(folders[1]),
                   "--output", str(tmp_path / "o")], "evil.pt")


def test_existing_upscale_output_needs_overwrite(tmp_path, capsys, folders):
    save_checkpoint(tmp_path / "m.pt", ELSR(ModelConfig(scale=2)))
    src = folders[1] / "img0.png"
    write_png(tmp_path / "out.png", np.zeros((4, 4, 3), np.uint8))
    before = (tmp_path / "out.png").read_bytes()
    fails(capsys, ["upscale", "--model", str(tmp_path / "m.pt"), "--input", str(src),
                   "--output", str(tmp_path / "out.png")], "out.png", "--overwrite")
    assert (tmp_path / "out.png").read_bytes() == before


def test_console_entry_prints_no_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    result = subprocess.run([sys.executable, "-m", "elsr", "eval", "--model", str(tmp_path / "none.pt"),
                             "--data", str(tmp_path / "empty")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "none.pt" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_train_script_is_the_same_command(tmp_path):
    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, str(repo / "train.py"), "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "--schedule" in result.stdout and "--resume" in result.stdout


def test_an_interrupted_training_says_how_to_continue(tmp_path, capsys, folders, monkeypatch):
    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr("elsr.cli.train.train", interrupted)
    assert main(train_args(tmp_path, *folders)) == 130
    assert capsys.readouterr().err.strip() == ("elsr: interrupted (rerun the same command with --resume to continue "
                                               "from the last saved epoch)")
