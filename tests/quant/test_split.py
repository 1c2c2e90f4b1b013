"""The split skip path (two offset int8 copies per hidden channel): the same float function, integer graphs that
run exactly what QAT trained, and files that carry it faithfully."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from elsr.errors import ElsrError
from elsr.export.onnx_int8 import build_int8_model, quant_params_from_onnx, save_model
from elsr.model.network import ELSR, ModelConfig
from elsr.quant.checkpoint import load_qat_checkpoint, save_qat_checkpoint
from elsr.quant.fake_quant import COPIES, SPLIT, QuantELSR
from elsr.quant.params import fold_copies, qat_model_from_params, quant_params
from elsr.runtime.contract import COPIES_KEY, model_metadata
from tests.helpers import observe_ranges


def perturbed(prelu: str = "shared", scale: int = 4) -> ELSR:
    torch.manual_seed(0)
    model = ELSR(ModelConfig(scale=scale, prelu=prelu))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def calibrated_split(model: ELSR) -> QuantELSR:
    return observe_ranges(QuantELSR(model, split=True), batches=4, size=24)


def run_onnx(proto: onnx.ModelProto, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"lr": x.numpy()})[0]


def test_split_graph_computes_the_unsplit_network_before_activation_rounding():
    """With activation rounding taken out, the copies add back to the unsplit tensors: the offsets cancel."""
    model = perturbed()
    plain, split = QuantELSR(model), calibrated_split(model)
    for q in (plain, split):
        for quant in q.quant.values():
            quant.forward = lambda x: x
    x = torch.rand(1, 3, 20, 28)
    plain_taps: dict = {}
    split_taps: dict = {}
    with torch.no_grad():
        torch.testing.assert_close(split(x, split_taps), plain(x, plain_taps), atol=1e-4, rtol=0)
    for name in ("head", "body_conv2", "add"):
        torch.testing.assert_close(split_taps[name], plain_taps[name], atol=1e-4, rtol=0)


@pytest.mark.parametrize("prelu", ["shared", "channel"])
def test_onnx_runs_what_qat_trained(prelu):
    q = calibrated_split(perturbed(prelu))
    params = quant_params(q)
    assert params.split and params.copies == COPIES
    proto = build_int8_model(params, model_metadata(perturbed(prelu), "int8"))
    x = torch.rand(1, 3, 30, 42)
    with torch.no_grad():
        ref = q(x).numpy()
    steps = np.abs(run_onnx(proto, x) - ref) * 255   # onnxruntime's LeakyRelu table may round a tie the other way
    assert (steps < 1e-3).mean() > 0.99 and steps.max() <= 2 + 1e-3


def test_split_beats_one_copy_on_the_skip_path():
    """The point of the copies: the integer model is closer to the float one than the unsplit integer model."""
    model = perturbed()
    x = torch.rand(2, 3, 40, 40)
    errors = {}
    for split in (False, True):
        q = QuantELSR(model, split=split).train()
        with torch.no_grad():
            q(x)
        q.freeze_observers()
        with torch.no_grad():
            errors[split] = float(((q.eval()(x) - model(x).clamp(0, 1)) ** 2).mean())
    assert errors[True] < errors[False]


def test_split_file_reads_back_and_rebuilds_bit_identically(tmp_path):
    model = perturbed()
    q = calibrated_split(model)
    params = quant_params(q)
    proto = build_int8_model(params, model_metadata(model, "int8"))
    save_model(proto, tmp_path / "split.onnx")
    meta = {p.key: p.value for p in onnx.load(tmp_path / "split.onnx").metadata_props}
    assert meta[COPIES_KEY] == str(COPIES)
    read = quant_params_from_onnx(tmp_path / "split.onnx")
    assert read.split
    for name, conv in params.convs.items():
        for field in ("weight", "weight_scale", "bias", "bias_scale"):
            np.testing.assert_array_equal(getattr(read.convs[name], field), getattr(conv, field))
    rebuilt = build_int8_model(read, model_metadata(model, "int8"))
    before = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in rebuilt.graph.initializer}
    assert before.keys() == after.keys()
    for name, array in before.items():
        np.testing.assert_array_equal(after[name], array, err_msg=name)
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        np.testing.assert_array_equal(qat_model_from_params(read)(x).numpy(), q(x).numpy())


def test_copies_fold_back_to_the_trained_convs():
    params = quant_params(calibrated_split(perturbed()))
    folded = fold_copies(params.integer_convs(), params.activations, params.config.channels)
    for name, conv in params.convs.items():
        for field in ("weight", "weight_scale", "bias", "bias_scale"):
            np.testing.assert_array_equal(getattr(folded[name], field), getattr(conv, field), err_msg=name)
    channels = params.channels()
    assert all(channels[name] == COPIES * params.config.channels for name in SPLIT)


def test_copies_that_disagree_are_refused(tmp_path):
    """A file whose two copies were edited apart is not a split ELSR graph: refused, never silently folded."""
    model = perturbed()
    proto = build_int8_model(quant_params(calibrated_split(model)), model_metadata(model, "int8"))
    head = next(i for i in proto.graph.initializer if i.name == "head_w")
    weights = numpy_helper.to_array(head).copy()
    weights[weights.shape[0] // 2] += 1
    head.CopyFrom(numpy_helper.from_array(weights, "head_w"))
    save_model(proto, tmp_path / "tampered.onnx")
    with pytest.raises(ElsrError, match="split skip path is not the one elsr writes"):
        quant_params_from_onnx(tmp_path / "tampered.onnx")


def test_qat_checkpoint_keeps_the_split(tmp_path):
    q = calibrated_split(perturbed())
    save_qat_checkpoint(tmp_path / "qat.pt", q, [{"epoch": 1}])
    loaded = load_qat_checkpoint(tmp_path / "qat.pt")
    assert loaded.split
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.eval()(x).numpy(), q(x).numpy())
