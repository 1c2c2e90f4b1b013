import json

import numpy as np
import pytest

from elsr.cli.main import main
from elsr.data.bicubic import downscale
from elsr.data.metrics import image_metrics
from elsr.io.images import mod_crop, read_image
from elsr.model.checkpoint import save_checkpoint
from elsr.runtime.evaluate import EvalConfig, evaluate
from tests.helpers import nearest_neighbour_elsr


@pytest.fixture
def nn_model(tmp_path):
    save_checkpoint(tmp_path / "nn.pt", nearest_neighbour_elsr(4))
    return tmp_path / "nn.pt"


def nearest(lr, scale):
    return np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)


def test_eval_on_set5_matches_independent_computation(shared_data, nn_model, tmp_path, capsys):
    hr_dir = shared_data / "Set5" / "HR"
    result = evaluate(EvalConfig(model=nn_model, data=hr_dir, device="cpu", progress=False))
    assert [r["image"] for r in result["images"]] == sorted(p.name for p in hr_dir.glob("*.png"))
    for row in result["images"]:
        hr = mod_crop(read_image(hr_dir / row["image"]), 4)
        expected = image_metrics(nearest(downscale(hr, 4), 4), hr, 4)
        assert row["model"] == pytest.approx(expected, abs=1e-9)
    # the field's reference figure for bicubic x4 on Set5 (Y, border 4) is 28.42 dB
    assert result["mean"]["bicubic"]["psnr_y"] == pytest.approx(28.42, abs=0.05)
    assert result["gain"]["psnr_y"] < 0  # nearest neighbour is worse than bicubic

    given = evaluate(EvalConfig(model=nn_model, data=hr_dir, lr=shared_data / "Set5" / "LR_bicubic" / "X4",
                                device="cpu", progress=False))
    assert given["mean"]["model"]["psnr_y"] == pytest.approx(result["mean"]["model"]["psnr_y"], abs=1e-9)

    assert main(["eval", "--model", str(nn_model), "--data", str(hr_dir), "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "| **mean** |" in printed and "baby.png" in printed
    assert json.loads((tmp_path / "r.json").read_text())["scale"] == 4


def test_set14_needs_convert_for_its_greyscale_image(shared_data, nn_model, capsys):
    argv = ["eval", "--model", str(nn_model), "--data", str(shared_data / "Set14" / "HR")]
    assert main(argv) == 2
    assert "bridge.png" in capsys.readouterr().err
    assert main([*argv, "--convert"]) == 0
