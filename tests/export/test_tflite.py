"""TFLite models written from our weights and QAT parameters: parity with PyTorch, the QAT carried over,
the NHWC / uint8 on-device contract, and Set5 quality of the bundled models."""

from pathlib import Path

import numpy as np
import pytest
import torch

from elsr.errors import ElsrError
from elsr.export.checks import check_artifact, validate
from elsr.export.onnx_int8 import build_int8_model, load_int8_source, qat_model_from_onnx
from elsr.export.request import ExportRequest
from elsr.model.network import ELSR, ModelConfig, dcr_order
from elsr.quant.fake_quant import QuantELSR
from elsr.quant.params import quant_params
from elsr.runtime.loaders import load_upscaler
from tests.helpers import observe_ranges, smooth_image

pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed (pip install 'elsr[tflite]')")

from elsr.export import tflite  # noqa: E402  (needs ai_edge_litert)
from elsr.export.delegates import tflite_readiness  # noqa: E402
from elsr.runtime.tflite_model import TfliteModel, interpreter_class, read_metadata, schema  # noqa: E402

PRETRAINED = Path(__file__).resolve().parents[2] / "elsr" / "pretrained"


def trained_looking(config: ModelConfig, seed: int = 0) -> ELSR:
    torch.manual_seed(seed)
    model = ELSR(config)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
        model.body_act.weight.uniform_(0.05, 0.4)
    return model.eval()


def qat_like(model: ELSR) -> QuantELSR:
    """A QuantELSR with ranges observed on random inputs and frozen (what QAT hands over, minus the training)."""
    return observe_ranges(QuantELSR(model), size=24, seeded=True)


def save(tmp_path: Path, data: bytes, name: str) -> Path:
    return tflite.save_tflite(data, tmp_path / name)


def grid(x: np.ndarray) -> np.ndarray:
    return (np.round(x * 255) / 255).astype(np.float32)


@pytest.mark.parametrize("config", [ModelConfig(scale=4), ModelConfig(scale=3, channels=8, prelu="channel"),
                                    ModelConfig(scale=2)], ids=["x4", "x3-channel-prelu", "x2"])
def test_fp32_matches_pytorch_at_any_size_and_batch(tmp_path, config):
    model = trained_looking(config)
    runner = TfliteModel(save(tmp_path, tflite.fp32_tflite(model), "m.tflite"), threads=1)
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 17, 23), (2, 3, 32, 20), (1, 3, 5, 7)]:
        x = rng.random(shape, dtype=np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = runner(x)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


def test_int8_carries_the_qat_parameters_over_exactly(tmp_path):
    """Weights, biases, scales and zero points in the file are QAT's (int8 zero point = uint8 one - 128)."""
    s = schema()
    params = quant_params(qat_like(trained_looking(ModelConfig(scale=4))))
    model = s.ModelT.InitFromPackedBuf(tflite.int8_tflite(params), 0)
    graph = model.subgraphs[0]
    tensors = {t.name.decode(): t for t in graph.tensors}

    def data(name, dtype):
        return np.frombuffer(bytes(model.buffers[tensors[name].buffer].data), dtype)

    order = dcr_order(4)
    for name, conv in params.convs.items():
        weight, bias = conv.weight, conv.bias
        scales, bias_scales = conv.weight_scale, conv.bias_scale
        if name == "tail":
            weight, bias, scales, bias_scales = weight[order], bias[order], scales[order], bias_scales[order]
        np.testing.assert_array_equal(data(f"{name}_w", np.int8), weight.transpose(0, 2, 3, 1).ravel())
        np.testing.assert_array_equal(data(f"{name}_b", np.int32), bias)
        np.testing.assert_array_equal(np.float32(tensors[f"{name}_w"].quantization.scale), scales)
        np.testing.assert_array_equal(np.float32(tensors[f"{name}_b"].quantization.scale), bias_scales)
    for name in ("head", "body_conv1", "body_act", "body_conv2", "add"):
        q_scale, zero_point = params.activations[name]
        quant = tensors[name].quantization
        assert np.float32(quant.scale[0]) == np.float32(q_scale) and quant.zeroPoint[0] == zero_point - 128
    ops = [model.operatorCodes[op.opcodeIndex].builtinCode for op in graph.operators]
    b = s.BuiltinOperator
    assert ops == [b.QUANTIZE, b.CONV_2D, b.CONV_2D, b.LEAKY_RELU, b.CONV_2D, b.ADD, b.CONV_2D, b.DEPTH_TO_SPACE,
                   b.DEQUANTIZE]


@pytest.mark.parametrize("config", [ModelConfig(scale=4), ModelConfig(scale=3, channels=8, prelu="channel")],
                         ids=["x4-leaky-relu", "x3-channel-prelu"])
def test_int8_reproduces_the_fake_quant_model_and_the_onnx_graph(tmp_path, rng, config):
    import onnxruntime as ort

    qmodel = qat_like(trained_looking(config, seed=1))
    params = quant_params(qmodel)
    runner = TfliteModel(save(tmp_path, tflite.int8_tflite(params), "q.tflite"), threads=1)
    session = ort.InferenceSession(build_int8_model(params).SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.concatenate([grid(rng.random((1, 3, 40, 56), dtype=np.float32)),
                        smooth_image(rng, 40, 56).transpose(2, 0, 1)[None].astype(np.float32) / 255])
    # the channel-PReLU ONNX graph keeps its PRelu in float; TFLite's int8 PRELU has its own int8 alpha
    got = runner(x)
    with torch.no_grad():
        fake = qmodel(torch.from_numpy(x)).numpy()
    onnx_out = session.run(None, {"lr": x})[0]
    assert np.allclose(got * 255, np.round(got * 255), atol=1e-3) and got.min() >= 0 and got.max() <= 1  # pixel grid
    for ref in (fake, onnx_out):  # XNNPACK's int8 LeakyRelu multipliers have 8 fractional bits: close, not exact
        levels = np.abs(got - ref) * 255
        agreement = 10 * np.log10(255 ** 2 / np.mean(levels.astype(np.float64) ** 2))
        assert levels.max() <= 16 and (levels <= 1 + 1e-3).mean() > 0.85 and agreement > 45, \
            (levels.max(), (levels <= 1 + 1e-3).mean(), agreement)


@pytest.mark.parametrize("io", ["uint8", "int8", "uint8-float-ends"])
@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_pixel_io_contract(tmp_path, rng, int8, io):
    """RGB bytes (uint8, or int8 minus 128) NHWC in and out: the same pixels as the float model rounded, and an
    INT8 graph with uint8 or int8 ends has no float32 tensor anywhere."""
    model = trained_looking(ModelConfig(scale=4), seed=2)
    build = (lambda **kw: tflite.int8_tflite(quant_params(qat_like(model)), **kw)) if int8 else \
        (lambda **kw: tflite.fp32_tflite(model, **kw))
    pixels_model = save(tmp_path, build(io=io), f"{io}.tflite")
    float_model = TfliteModel(save(tmp_path, build(), "f.tflite"))
    interpreter = interpreter_class()(model_path=str(pixels_model))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    dtype = np.int8 if io == "int8" else np.uint8
    assert inp["dtype"] == dtype and out["dtype"] == dtype
    assert inp["name"] == "lr" and out["name"] == "sr"
    assert list(inp["shape_signature"]) == [-1, -1, -1, 3] and list(out["shape_signature"]) == [-1, -1, -1, 3]
    lr = smooth_image(rng, 30, 44)
    interpreter.resize_tensor_input(inp["index"], [1, 30, 44, 3])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], lr[None] if io != "int8" else (lr[None].astype(np.int16) - 128).astype(np.int8))
    interpreter.invoke()
    sr = interpreter.get_tensor(out["index"]).astype(int) + (128 if io == "int8" else 0)
    assert sr.shape == (1, 120, 176, 3)
    expected = np.clip(float_model(lr.transpose(2, 0, 1)[None].astype(np.float32) / 255), 0, 1)
    expected = np.round(expected[0].transpose(1, 2, 0) * 255)
    diff = np.abs(sr[0] - expected.astype(int))
    assert diff.max() <= (0 if int8 else 1) and diff.mean() < 0.01
    upscaler = load_upscaler(pixels_model, scale=4)  # elsr eval / upscale take the same pixels
    np.testing.assert_array_equal(upscaler(lr), sr[0].astype(np.uint8))
    if int8 and io != "uint8-float-ends":
        assert tflite_readiness(pixels_model).float_tensors == []


def test_xnnpack_partitions_and_float_tensors(tmp_path):
    """What LiteRT's XNNPACK delegate takes of each INT8 variant: the int8-I/O graph whole and integer; the uint8
    one integer with its two requantizing ends on LiteRT's kernels; float ends in one partition."""
    params = quant_params(qat_like(trained_looking(ModelConfig(scale=4))))
    found = {io: tflite_readiness(save(tmp_path, tflite.int8_tflite(params, io=io), f"{io}.tflite"))
             for io in tflite.TFLITE_IO}
    assert found["int8"].whole and found["int8"].float_tensors == []
    assert found["uint8"].float_tensors == [] and found["uint8"].partitions == 1
    assert sorted(set(found["uint8"].ops) - set(found["uint8"].delegated)) in ([], ["QUANTIZE"])
    assert found["uint8-float-ends"].whole and found["uint8-float-ends"].float_tensors == ["input_f", "sr_f"]
    assert found["float"].whole and found["float"].float_tensors == ["lr", "sr"]


def test_fixed_shape_and_metadata(tmp_path):
    model = trained_looking(ModelConfig(scale=4))
    path = save(tmp_path, tflite.fp32_tflite(model, fixed_shape=(1, 3, 24, 40), metadata={"commit": "abc"}), "f.tflite")
    interpreter = interpreter_class()(model_path=str(path))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(inp["shape"]) == [1, 24, 40, 3] and list(out["shape"]) == [1, 96, 160, 3]
    assert list(inp["shape_signature"]) == [1, 24, 40, 3]
    meta = read_metadata(path)
    assert meta["scale"] == "4" and meta["layout"] == "NHWC" and meta["precision"] == "fp32"
    assert meta["io"] == "float" and meta["io_dtype"] == "float32" and meta["commit"] == "abc"
    assert "1x24x40x3" in meta["contract_input"]
    assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["lr"], "outputs": ["sr"]}}


def test_load_upscaler_runs_tflite_and_checks_the_scale(tmp_path, rng):
    model = trained_looking(ModelConfig(scale=3, channels=4))
    path = save(tmp_path, tflite.fp32_tflite(model), "m.tflite")
    lr = smooth_image(rng, 20, 26)
    torch_up = load_upscaler(_checkpoint(tmp_path, model), device="cpu")
    diff = np.abs(load_upscaler(path)(lr).astype(int) - torch_up(lr).astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01
    with pytest.raises(ElsrError, match="x3 model but x4 was asked"):
        load_upscaler(path, scale=4)
    (tmp_path / "bad.tflite").write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ElsrError, match="is a text file; a PyTorch checkpoint or an ONNX model"):
        load_upscaler(tmp_path / "bad.tflite")
    (tmp_path / "junk.tflite").write_bytes(bytes(range(200, 256)) * 4)  # no kind we know: LiteRT's own check
    with pytest.raises(ElsrError, match="not a TFLite model"):
        load_upscaler(tmp_path / "junk.tflite")


def _checkpoint(tmp_path: Path, model: ELSR) -> Path:
    from elsr.model.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "m.pt", model)
    return tmp_path / "m.pt"


def test_check_artifact_catches_a_wrong_graph(tmp_path):
    model = trained_looking(ModelConfig(scale=4))
    other = trained_looking(ModelConfig(scale=4), seed=5)
    path = save(tmp_path, tflite.fp32_tflite(other), "other.tflite")
    with pytest.raises(ElsrError, match="differs from PyTorch"):
        check_artifact(ExportRequest(model), path)
    qmodel = qat_like(model)
    path = save(tmp_path, tflite.int8_tflite(quant_params(qat_like(other))), "other_int8.tflite")
    with pytest.raises(ElsrError, match="does not reproduce its QAT model"):
        check_artifact(ExportRequest(model, qmodel=qmodel), path)


def test_bundled_int8_on_set5_within_budget(tmp_path, shared_data):
    """The bundled QAT result (read back from elsr_x4_int8.onnx) as TFLite INT8 on Set5: within the issue's
    0.1 dB of FP32, and the conversion costs at most 0.01 dB against onnxruntime's INT8 graph of the same
    parameters (the rest of the gap is the QAT model's own)."""
    from elsr.model.checkpoint import load_model

    model, _ = load_model(PRETRAINED / "elsr_x4.pt")
    qmodel = qat_model_from_onnx(PRETRAINED / "elsr_x4_int8.onnx")
    path = save(tmp_path, tflite.int8_tflite(quant_params(qmodel)), "int8.tflite")
    ours = validate(path, model, shared_data / "Set5" / "HR")
    onnx_int8 = validate(PRETRAINED / "elsr_x4_int8.onnx", model, shared_data / "Set5" / "HR")
    assert abs(ours["psnr_y"] - onnx_int8["psnr_y"]) <= 0.01, (ours, onnx_int8)
    assert -0.1 <= ours["delta_y_db"] <= 0.05 and ours["psnr_y_vs_fp32"] > 40, ours  # the TFLite budget


def test_operator_graphs_chained_give_the_int8_graph():
    """The ARM64 check's probes are the INT8 graph's own operators: run one after another, they give its output."""
    _, params, _ = load_int8_source(PRETRAINED / "elsr_x4_int8.onnx")
    graphs = tflite.int8_operator_graphs(params)
    assert list(graphs) == ["conv_head", "conv_body1", "conv_body2", "conv_tail", "leaky_relu", "add", "depth_to_space"]

    def run(name: str, *xs: np.ndarray) -> np.ndarray:
        interpreter = interpreter_class()(model_content=graphs[name])
        details = interpreter.get_input_details()
        for d, x in zip(details, xs):
            interpreter.resize_tensor_input(d["index"], list(x.shape))
        interpreter.allocate_tensors()
        for d, x in zip(details, xs):
            interpreter.set_tensor(d["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    lr = smooth_image(np.random.default_rng(4), 24, 20)
    x = (lr.astype(np.int16) - 128).astype(np.int8)[None]          # the input on the int8 grid (scale 1/255)
    head = run("conv_head", x)
    body = run("conv_body2", run("leaky_relu", run("conv_body1", head)))
    sr = run("depth_to_space", run("conv_tail", run("add", head, body)))
    whole = interpreter_class()(model_content=tflite.int8_tflite(params, io="uint8"))
    whole.resize_tensor_input(whole.get_input_details()[0]["index"], [1, 24, 20, 3])
    whole.allocate_tensors()
    whole.set_tensor(whole.get_input_details()[0]["index"], lr[None])
    whole.invoke()
    expected = whole.get_tensor(whole.get_output_details()[0]["index"])
    assert np.array_equal((sr.astype(np.int16) + 128).astype(np.uint8), expected)
