import json
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml

from elsr.cli.main import main
from elsr.export.onnx_int8 import build_int8_model, save_model
from elsr.model.network import ELSR, ModelConfig
from elsr.quant.fake_quant import QuantELSR
from elsr.quant.params import quant_params
from elsr.train.trainer import TrainConfig, train
from tests.helpers import image_folder, smooth_image


def calibrated(prelu="shared", seed=0) -> QuantELSR:
    torch.manual_seed(seed)
    q = QuantELSR(ELSR(ModelConfig(scale=4, prelu=prelu))).train()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for _ in range(4):
            q(torch.from_numpy(smooth_image(rng, 24, 24)).permute(2, 0, 1)[None].float() / 255)
    q.freeze_observers()
    return q.eval()


def optimized_ops(path, tmp_path) -> Counter:
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Counter(node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)


def test_onnxruntime_runs_the_int8_graph_in_integers(tmp_path):
    path = save_model(build_int8_model(quant_params(calibrated())), tmp_path / "int8.onnx")
    ops = optimized_ops(path, tmp_path)
    assert ops["QLinearConv"] == 4 and ops["Conv"] == 0
    assert ops["QLinearAdd"] == 1 and ops["QLinearLeakyRelu"] == 1 and ops["Add"] == 0
    # one Quantize at the input and one Dequantize at the output: DepthToSpace moves uint8
    assert ops["QuantizeLinear"] == 1 and ops["DequantizeLinear"] == 1 and ops["DepthToSpace"] == 1


@pytest.mark.parametrize("prelu,learned", [("shared", False), ("channel", False), ("shared", True)])
def test_int8_output_equals_fake_quant_within_one_step(tmp_path, rng, prelu, learned):
    q = calibrated(prelu)
    if learned:  # learned (LSQ) ranges, moved off their observed values
        q.learn_ranges()
        with torch.no_grad():
            for name, quant in q.quant.items():
                if bool(quant.learned):
                    quant.log_scale.sub_(0.2)
                    quant.zero_point.add_(3.3)
    path = save_model(build_int8_model(quant_params(q)), tmp_path / "int8.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = [smooth_image(rng, 45, 61), smooth_image(rng, 45, 61)]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255  # batch of 2, odd size
    got = session.run(None, {"lr": x.numpy()})[0]
    with torch.no_grad():
        ref = q(x).numpy()
    assert got.shape == (2, 3, 180, 244)
    steps = np.abs(got - ref) * 255
    assert (steps <= 1 + 1e-3).mean() >= 0.999 and steps.mean() < 0.01


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small FP32 model trained for a few seconds on generated images."""
    root = tmp_path_factory.mktemp("q")
    rng = np.random.default_rng(1)
    train_dir = image_folder(root / "train", rng, 4, (96, 96))
    val_dir = image_folder(root / "val", rng, 2, (64, 64))
    stage = {"name": "x4", "scale": 4, "patch_size": 16, "batch_size": 16, "loss": "mse", "lr": 0.005,
             "epochs": 3, "iters_per_epoch": 60, "init": "scratch", "scheduler": {"name": "cosine"}}
    (root / "s.yaml").write_text(yaml.safe_dump({"name": "t", "stages": [stage]}))
    train(TrainConfig(schedule=root / "s.yaml", train=train_dir, val=val_dir, out=root / "run", device="cpu",
                      progress=False))
    return root / "run" / "model.pt", train_dir, val_dir


def test_quantize_qat_writes_model_report_and_beats_ptq(tmp_path, trained, capsys):
    weights, train_dir, val_dir = trained
    out = tmp_path / "int8.onnx"
    assert main(["quantize", "--weights", str(weights), "--method", "qat", "--train", str(train_dir),
                 "--val", str(val_dir), "--out", str(out), "--epochs", "3", "--iters", "30", "--patch-size", "16", "--no-progress"]) == 0
    for path in (out, out.with_name("int8_ptq.onnx"), out.with_suffix(".qat.pt"), out.with_suffix(".report.json"),
                 out.with_suffix(".report.md")):
        assert path.is_file(), path
    report = json.loads(out.with_suffix(".report.json").read_text())
    rows = report["eval"][str(val_dir)]
    assert rows["qat"]["psnr_y"] >= rows["ptq"]["psnr_y"]
    assert rows["qat"]["psnr_y"] > rows["fp32"]["psnr_y"] - 0.5  # (QAT may even improve an undertrained model)
    assert set(report["layer_sqnr_db"]) == {"head", "body_conv1", "body_act", "body_conv2", "add", "tail"}
    assert all(v > 15 for v in report["layer_sqnr_db"].values())
    assert report["int8_vs_fake_quant"]["share_within_1_level"] > 0.999
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["precision"] == "int8" and meta["scale"] == "4" and meta["format"] == "elsr-onnx"
    assert "| qat |" in capsys.readouterr().out

    # the QAT result is reusable without training again, and upscale runs the INT8 model
    again = tmp_path / "again.onnx"
    assert main(["quantize", "--weights", str(weights), "--train", str(train_dir), "--val", str(val_dir),
                 "--out", str(again), "--patch-size", "16", "--qat-checkpoint", str(out.with_suffix(".qat.pt"))]) == 0
    assert onnx.load(str(again)).graph == onnx.load(str(out)).graph
    assert main(["upscale", "--model", str(out), "--input", str(val_dir), "--output", str(tmp_path / "up")]) == 0
    assert len(list((tmp_path / "up").glob("*.png"))) == 2


def test_quantize_ptq_only(tmp_path, trained):
    weights, train_dir, val_dir = trained
    out = tmp_path / "ptq.onnx"
    assert main(["quantize", "--weights", str(weights), "--method", "ptq", "--train", str(train_dir),
                 "--eval", str(val_dir), "--out", str(out), "--patch-size", "16"]) == 0
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert set(report["eval"][str(val_dir)]) == {"bicubic", "fp32", "ptq"}


def test_quantize_bad_inputs(tmp_path, trained, capsys):
    weights, train_dir, val_dir = trained
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    base = ["quantize", "--patch-size", "16", "--train", str(train_dir), "--val", str(val_dir), "--out", str(tmp_path / "o.onnx")]
    assert main([*base, "--weights", str(tmp_path / "junk.pt")]) == 2
    assert "junk.pt" in capsys.readouterr().err
    assert main([*base, "--weights", str(weights), "--qat-checkpoint", str(weights)]) == 2
    assert "not a QAT checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize("prelu", ["shared", "channel"])
def test_channel_padding_is_bit_exact(tmp_path, rng, prelu):
    params = quant_params(calibrated(prelu))
    x = (np.stack([smooth_image(rng, 33, 47)]).transpose(0, 3, 1, 2) / 255).astype(np.float32)
    outputs = []
    for multiple in (1, 8, 16):
        model = build_int8_model(params, channel_multiple=multiple)
        head = next(i for i in model.graph.initializer if i.name == "head_w")
        assert head.dims[0] == (6 if multiple == 1 else multiple)
        outputs.append(ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
                       .run(None, {"lr": x})[0])
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])
