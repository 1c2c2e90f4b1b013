"""ORT-format models: the INT8 .ort gives exactly its .onnx outputs, the required-operators config is
written beside it, fixed shapes work, and the bundled INT8 model converts."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from elsr.errors import ElsrError
from elsr.export.formats import FORMATS, onnx_model
from elsr.export.ort_format import config_path, required_operators, write_ort
from elsr.export.request import ExportRequest
from elsr.model.network import ELSR, ModelConfig
from elsr.quant.fake_quant import QuantELSR
from elsr.runtime.base import fixed_size_tiles
from elsr.runtime.loaders import load_upscaler
from tests.helpers import observe_ranges, smooth_image

PRETRAINED = Path(__file__).resolve().parents[2] / "elsr" / "pretrained"


def small_models() -> tuple[ELSR, QuantELSR]:
    torch.manual_seed(0)
    model = ELSR(ModelConfig(scale=4)).eval()
    return model, observe_ranges(QuantELSR(model), size=20, seeded=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """FP32 and INT8 requests with their .onnx and .ort files."""
    root = tmp_path_factory.mktemp("ort")
    model, qmodel = small_models()
    out = {}
    for name, request in (("fp32", ExportRequest(model)), ("int8", ExportRequest(model, qmodel=qmodel))):
        proto = onnx_model(request)
        onnx.save_model(proto, str(root / f"{name}.onnx"))
        files = write_ort(proto, root / f"{name}.ort")
        out[name] = (request, root / f"{name}.onnx", files)
    return out


def run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"lr": x})[0]


def test_int8_ort_output_equals_its_onnx_exactly(exported, rng):
    _, onnx_path, (ort_path, _) = exported["int8"]
    for x in (rng.random((1, 3, 33, 47), dtype=np.float32),
              smooth_image(rng, 40, 56).transpose(2, 0, 1)[None].astype(np.float32) / 255,
              rng.random((2, 3, 16, 24), dtype=np.float32)):
        np.testing.assert_array_equal(run(ort_path, x), run(onnx_path, x))
    lr = smooth_image(rng, 30, 20)
    np.testing.assert_array_equal(load_upscaler(ort_path)(lr), load_upscaler(onnx_path)(lr))


def test_fp32_ort_matches_pytorch(exported, rng):
    request, _, (ort_path, _) = exported["fp32"]
    x = rng.random((1, 3, 21, 19), dtype=np.float32)
    with torch.no_grad():
        ref = request.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run(ort_path, x), ref, rtol=0, atol=1e-5)


def test_ort_file_is_ort_format_with_metadata(exported):
    _, _, (ort_path, _) = exported["int8"]
    assert ort_path.read_bytes()[4:8] == b"ORTM"  # the flatbuffer identifier of ORT-format models
    meta = ort.InferenceSession(str(ort_path), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert meta.custom_metadata_map["scale"] == "4" and meta.custom_metadata_map["precision"] == "int8"


def test_required_operators_config_is_written_beside_the_model(exported):
    for name, expected in (("int8", {"QLinearConv", "QLinearAdd", "QLinearLeakyRelu", "DepthToSpace"}),
                           ("fp32", {"Conv", "DepthToSpace"})):
        _, _, (ort_path, config) = exported[name]
        assert config == config_path(ort_path) == ort_path.with_name(f"{name}.required_operators.config")
        lines = required_operators(config)
        ops = {op for line in lines for op in line.split(";")[2].split(",")}
        assert expected <= ops, lines
        assert all(line.count(";") == 2 for line in lines)
        text = config.read_text()
        assert f"# - {ort_path.name}" in text and "/tmp" not in text  # no temporary path leaks into the file


def test_fixed_shape_ort(tmp_path, rng):
    model, qmodel = small_models()
    request = ExportRequest(model, qmodel=qmodel, fixed_shape=(1, 3, 24, 32))
    out = FORMATS["ort"].export(request, tmp_path / "fixed.ort")
    assert out.files == [tmp_path / "fixed.ort", tmp_path / "fixed.required_operators.config"]
    session = ort.InferenceSession(str(out.files[0]), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 3, 24, 32] and session.get_outputs()[0].shape == [1, 3, 96, 128]
    assert any("NNAPI: takes it whole: 32/32 nodes in 1 partition" in line for line in out.lines), out.lines
    # any image size runs in windows of the fixed size; an image at least that large is exactly the dynamic result
    dynamic = tmp_path / "dynamic.onnx"
    onnx.save_model(onnx_model(ExportRequest(model, qmodel=qmodel)), str(dynamic))
    lr = smooth_image(rng, 50, 70)
    np.testing.assert_array_equal(load_upscaler(out.files[0])(lr), load_upscaler(dynamic)(lr))
    assert load_upscaler(out.files[0])(smooth_image(rng, 10, 12)).shape == (40, 48, 3)
    with pytest.raises(ElsrError, match="cannot fix the input shape to 1x4x8x8"):
        FORMATS["ort"].export(ExportRequest(model, fixed_shape=(1, 4, 8, 8)), tmp_path / "bad.ort")


def test_fixed_size_tiles_places_every_window(rng):
    lr = smooth_image(rng, 41, 67)

    def nearest(tile):
        return np.repeat(np.repeat(tile, 2, axis=0), 2, axis=1)

    np.testing.assert_array_equal(fixed_size_tiles(nearest, lr, (24, 30), 2), nearest(lr))
    small = smooth_image(rng, 9, 12)  # smaller than the window: padded, then cropped back
    np.testing.assert_array_equal(fixed_size_tiles(nearest, small, (24, 30), 2), nearest(small))


def test_bundled_int8_model_converts_and_keeps_its_outputs(tmp_path, shared_data):
    from elsr.io.images import list_images, read_image

    bundled = PRETRAINED / "elsr_x4_int8.onnx"
    files = write_ort(onnx.load(str(bundled)), tmp_path / "elsr_x4_int8.ort")
    ours, reference = load_upscaler(files[0]), load_upscaler(bundled)
    for path in list_images(shared_data / "Set5" / "LR_bicubic" / "X4")[:3]:
        lr = read_image(path)
        np.testing.assert_array_equal(ours(lr), reference(lr))
