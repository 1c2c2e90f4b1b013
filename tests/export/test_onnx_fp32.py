"""FP32 ONNX export: one checked, self-contained file that matches PyTorch at any batch and size."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from elsr.cli.main import main
from elsr.errors import ElsrError
from elsr.export.onnx_fp32 import CHECK_SHAPES, check_inputs, check_parity, export_onnx, onnx_opset
from elsr.model.checkpoint import save_checkpoint
from elsr.model.network import ELSR, ModelConfig, count_parameters
from elsr.runtime.contract import model_metadata as onnx_metadata
from tests.helpers import image_folder

REPO = Path(__file__).resolve().parents[2]
META = {"val": {"psnr_y": 31.25, "ssim_y": 0.9}, "val_data": "data/Set5/HR"}


def random_elsr() -> ELSR:
    torch.manual_seed(0)
    return ELSR(ModelConfig(scale=4)).eval()


def trained_looking_elsr() -> ELSR:
    """Weights well away from their initialisation: larger, with per-channel PReLU slopes of both signs."""
    torch.manual_seed(1)
    model = ELSR(ModelConfig(scale=3, channels=8, prelu="channel"))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
        model.body_act.weight.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.fixture(scope="module", params=[("random", None), ("trained", 18)], ids=["random", "trained-opset18"])
def exported(request, tmp_path_factory):
    name, opset = request.param
    model = random_elsr() if name == "random" else trained_looking_elsr()
    return model, export_onnx(model, tmp_path_factory.mktemp(name) / "model.onnx", opset=opset, meta=META), opset


def test_parity_at_several_sizes_and_batches(exported):
    model, path, _ = exported
    inputs = check_inputs() + [torch.rand(3, 3, 40, 50), np.random.default_rng(1).random((4, 3, 9, 7), np.float32)]
    assert check_parity(model, path, inputs) <= 1e-4


def test_parity_on_real_images(exported, shared_data):
    model, path, _ = exported
    images = sorted((shared_data / "Set5" / "HR").glob("*.png"))[:3]
    assert check_parity(model, path, check_inputs(images)) <= 1e-4


@pytest.mark.parametrize("shape", [(1, 3, 7, 9), (3, 3, 40, 50)])
def test_dynamic_axes(exported, shape):
    model, path, _ = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (lr,), (sr,) = session.get_inputs(), session.get_outputs()
    assert (lr.name, sr.name) == ("lr", "sr") and lr.shape[1] == 3
    assert all(isinstance(dim, str) for dim in (lr.shape[0], lr.shape[2], lr.shape[3])), lr.shape
    x = np.random.default_rng(2).random(shape, np.float32)
    got = session.run(None, {"lr": x})[0]
    n, _, h, w = shape
    assert got.shape == (n, 3, h * model.scale, w * model.scale)
    np.testing.assert_allclose(got, model(torch.from_numpy(x)).detach().numpy(), rtol=0, atol=1e-4)


def test_one_self_contained_checked_file(exported):
    _, path, opset = exported
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no .data file, no temporary left
    proto = onnx.load(str(path), load_external_data=False)
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer)
    onnx.checker.check_model(str(path), full_check=True)
    assert {node.op_type for node in proto.graph.node} <= {"Conv", "PRelu", "Add", "DepthToSpace"}
    if opset is not None:
        assert onnx_opset(proto) == opset


def test_metadata(exported):
    model, path, _ = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    origin = {k: props.pop(k) for k in ("elsr_version", "commit", "command")}
    assert all(origin.values())
    assert props == {"format": "elsr-onnx", "scale": str(model.scale), "value_range": "0..1", "channel_order": "RGB",
                     "layout": "NCHW", "input": "lr", "output": "sr", "precision": "fp32",
                     "parameters": str(count_parameters(model)), "psnr_y": "31.2500", "psnr_data": "data/Set5/HR"}


def test_metadata_without_validation_scores():
    props = onnx_metadata(random_elsr())
    assert "psnr_y" not in props and "psnr_data" not in props
    assert all(isinstance(v, str) for v in props.values())


def test_parity_failure_is_an_error(exported):
    model, path, _ = exported
    other = ELSR(model.config)
    with pytest.raises(ElsrError, match="differs from PyTorch") as info:
        check_parity(other, path, check_inputs()[:1])
    assert info.value.path == str(path)


def test_existing_output_is_refused(tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    with pytest.raises(ElsrError, match="--overwrite") as info:
        export_onnx(random_elsr(), out)
    assert info.value.path == str(out) and out.read_bytes() == b"old"


def test_export_command(tmp_path, rng, monkeypatch, capsys):
    save_checkpoint(tmp_path / "model.pt", random_elsr(), META)
    images = image_folder(tmp_path / "images", rng, 4, (24, 30))
    monkeypatch.chdir(tmp_path)
    argv = ["export", "--weights", "model.pt", "--check-images", str(images)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "elsr_x4.onnx" in printed and "opset" in printed
    errors = [float(line.rsplit(" ", 1)[1]) for line in printed.splitlines() if line.startswith("parity")]
    assert len(errors) == len(CHECK_SHAPES) + 3 and max(errors) <= 1e-4
    assert (tmp_path / "elsr_x4.onnx").is_file()

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "elsr_x4.onnx" in err[0] and "--overwrite" in err[0]


def test_wrong_scale_checkpoint_is_refused(tmp_path, capsys):
    save_checkpoint(tmp_path / "x2.pt", ELSR(ModelConfig(scale=2)))
    argv = ["export", "--weights", str(tmp_path / "x2.pt"), "--scale", "4", "--out", str(tmp_path / "o.onnx")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x2.pt" in err[0] and "x2 model but x4 was asked" in err[0], err
    assert not (tmp_path / "o.onnx").exists()


def test_script_is_the_same_command():
    result = subprocess.run([sys.executable, str(REPO / "export_onnx.py"), "--help"], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0 and "--weights" in result.stdout and "--check-images" in result.stdout
