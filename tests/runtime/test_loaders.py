"""Running checkpoints and ONNX models the same way, and refusing files that are not ELSR models."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from elsr.cli.main import main
from elsr.errors import ElsrError
from elsr.export.onnx_fp32 import export_onnx
from elsr.io.images import read_image
from elsr.model.checkpoint import save_checkpoint
from elsr.runtime.evaluate import EvalConfig, evaluate
from elsr.runtime.loaders import load_upscaler
from elsr.runtime.onnx_model import OnnxUpscaler
from elsr.runtime.pytorch_model import TorchUpscaler
from tests.helpers import image_folder, nearest_neighbour_elsr, smooth_image

SCALE = 3


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The same x3 model as a checkpoint and as ONNX: nearest neighbour plus noise, so images stay natural."""
    folder = tmp_path_factory.mktemp("models")
    model = nearest_neighbour_elsr(SCALE)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(folder / "m.pt", model)
    return folder / "m.pt", export_onnx(model, folder / "m.onnx")


def fails(capsys, argv, *expected):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("elsr: error: "), err
    assert all(text in err[0] for text in expected), err


def assert_same_images(a: np.ndarray, b: np.ndarray) -> None:
    """Equal but for float rounding: at most one grey level, on a tiny fraction of pixels."""
    diff = np.abs(a.astype(int) - b.astype(int))
    assert a.shape == b.shape and diff.max() <= 1 and diff.mean() < 0.01, (diff.max(), diff.mean())


def test_onnx_upscaler_matches_checkpoint(models, rng):
    torch_up, onnx_up = load_upscaler(models[0], device="cpu"), load_upscaler(models[1], SCALE, "cpu", threads=1)
    assert isinstance(torch_up, TorchUpscaler) and isinstance(onnx_up, OnnxUpscaler)
    assert (torch_up.scale, onnx_up.scale, onnx_up.name) == (SCALE, SCALE, "m.onnx")
    assert onnx_up.session.get_session_options().intra_op_num_threads == 1
    for size in ((13, 17), (64, 48)):
        lr = smooth_image(rng, *size)
        sr = onnx_up(lr)
        assert sr.dtype == np.uint8 and sr.shape == (size[0] * SCALE, size[1] * SCALE, 3)
        assert_same_images(sr, torch_up(lr))


def test_upscale_command_gives_the_same_images(models, tmp_path, rng):
    src = image_folder(tmp_path / "in", rng, 2, (40, 52))
    for model in models:
        assert main(["upscale", "--model", str(model), "--input", str(src), "--output", str(tmp_path / model.suffix),
                     "--device", "cpu"]) == 0
    for name in ("img0.png", "img1.png"):
        assert_same_images(read_image(tmp_path / ".onnx" / name), read_image(tmp_path / ".pt" / name))


def test_eval_command_with_onnx(models, tmp_path, rng, capsys):
    data = image_folder(tmp_path / "hr", rng, 2, (60, 72))
    assert main(["eval", "--model", str(models[1]), "--data", str(data), "--scale", str(SCALE)]) == 0
    assert "| **mean** |" in capsys.readouterr().out
    onnx_mean, torch_mean = (evaluate(EvalConfig(model=m, data=data, device="cpu", progress=False))["mean"]["model"]
                             for m in (models[1], models[0]))
    assert onnx_mean == pytest.approx(torch_mean, abs=0.01)


def test_scale_is_inferred_without_metadata(models, tmp_path):
    proto = onnx.load(str(models[1]))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    assert load_upscaler(tmp_path / "bare.onnx").scale == SCALE
    for value, dims in ((proto.graph.input[0], (1, 3, 10, 12)), (proto.graph.output[0], (1, 3, 30, 36))):
        for dim, size in zip(value.type.tensor_type.shape.dim, dims):   # a fixed shape: probed at that shape
            dim.dim_value = size
    onnx.save(proto, str(tmp_path / "bare_fixed.onnx"))
    fixed = load_upscaler(tmp_path / "bare_fixed.onnx")
    assert fixed.fixed_size == (10, 12) and fixed.scale == SCALE


def test_ort_format_model(models, tmp_path):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "m.ort")
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(models[1]), options, providers=["CPUExecutionProvider"])
    lr = smooth_image(np.random.default_rng(3), 10, 12)
    np.testing.assert_array_equal(load_upscaler(tmp_path / "m.ort")(lr), load_upscaler(models[1])(lr))


def test_scale_mismatch_is_refused(models, tmp_path, capsys):
    for model in models:
        with pytest.raises(ElsrError, match=f"x{SCALE} model but x2 was asked") as info:
            load_upscaler(model, scale=2)
        assert info.value.path == str(model)
    fails(capsys, ["eval", "--model", str(models[1]), "--data", str(tmp_path), "--scale", "4"],
          "m.onnx", "x3 model but x4 was asked")


def foreign_onnx(path):
    """A valid ONNX model that is not an image model: a 2-D input."""
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "foreign",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.mark.parametrize("kind", ["garbage", "truncated", "foreign"])
def test_bad_onnx_files_are_refused(models, tmp_path, rng, capsys, kind):
    bad = tmp_path / f"{kind}.onnx"
    if kind == "garbage":
        bad.write_bytes(bytes(rng.integers(0, 256, 3000, dtype=np.uint8)))
    elif kind == "truncated":
        data = models[1].read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    else:
        foreign_onnx(bad)
    with pytest.raises(ElsrError) as info:
        load_upscaler(bad)
    assert info.value.path == str(bad)
    src = image_folder(tmp_path / "in", rng, 1, (8, 8))
    fails(capsys, ["upscale", "--model", str(bad), "--input", str(src), "--output", str(tmp_path / "out")],
          f"{kind}.onnx", "not an image model" if kind == "foreign" else "cannot load")


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(ElsrError, match="no such model file"):
        load_upscaler(tmp_path / "none.onnx")
    with pytest.raises(ElsrError, match=r"\.pt, \.pth, \.onnx, \.ort") as info:
        load_upscaler(tmp_path / "model.h5")
    assert info.value.path == str(tmp_path / "model.h5")


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="onnxruntime has CUDA here")
def test_cuda_without_cuda_is_refused(models):
    with pytest.raises(ElsrError, match="--device cuda"):
        load_upscaler(models[1], device="cuda")
