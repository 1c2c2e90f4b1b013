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
from elsr.quant.fake_quant import COPIES, SPLIT, QuantELSR, fake_quant_weight, weight_scales
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


def on_int8_grid(model: ELSR) -> ELSR:
    """``model`` with each conv's weights rounded to its own int8 grid: no half steps for the copies to carry."""
    with torch.no_grad():
        for layer in (model.head, model.body_conv1, model.body_conv2, model.tail):
            layer.weight.copy_(fake_quant_weight(layer.weight, weight_scales(layer.weight)))
    return model


def without_activation_rounding(q: QuantELSR) -> QuantELSR:
    for quant in q.quant.values():
        quant.forward = lambda x: x
    return q


def test_split_graph_computes_the_unsplit_network_before_activation_rounding():
    """With activation rounding taken out (and weights the unsplit graph holds exactly), the copies add back to
    the unsplit tensors: the offsets cancel."""
    model = on_int8_grid(perturbed())
    plain = without_activation_rounding(QuantELSR(model))
    split = without_activation_rounding(calibrated_split(model))
    x = torch.rand(1, 3, 20, 28)
    plain_taps: dict = {}
    split_taps: dict = {}
    with torch.no_grad():
        torch.testing.assert_close(split(x, split_taps), plain(x, plain_taps), atol=1e-4, rtol=0)
    for name in ("head", "body_conv2", "add"):
        torch.testing.assert_close(split_taps[name], plain_taps[name], atol=1e-4, rtol=0)


def test_the_copies_weights_carry_one_more_bit():
    """Each copy has its own int8 weights (ceil and floor of the weight's half steps), so before activation rounding
    the split graph is much closer to the float network than the unsplit one with its one int8 weight."""
    model = perturbed()
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        ref = model(x)
        errors = {split: float(((without_activation_rounding(q)(x) - ref) ** 2).mean())
                  for split, q in ((False, QuantELSR(model)), (True, calibrated_split(model)))}
    assert errors[True] < errors[False] / 2   # half the weight error: a quarter of its noise, the offsets aside


def test_copy_weights_are_the_ceiling_and_floor_of_the_half_steps():
    model = perturbed()
    q = calibrated_split(model)
    params = quant_params(q)
    for name, conv in params.convs.items():
        weight = getattr(model, name).weight.detach()
        halves = torch.round(2 * weight / weight_scales(weight)[:, None, None, None]).numpy().astype(np.int16)
        first, second = conv.copy_weights()
        np.testing.assert_array_equal(first.astype(np.int16) + second, halves, err_msg=name)
        assert set(np.unique(conv.half_step)) <= {0, 1} and np.abs(first).max() <= 127 and np.abs(second).max() <= 127
    assert any(conv.half_step.any() for conv in params.convs.values())


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
        for field in ("weight", "weight_scale", "bias", "bias_scale", "half_step"):
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
        for field in ("weight", "weight_scale", "bias", "bias_scale", "half_step"):
            np.testing.assert_array_equal(getattr(folded[name], field), getattr(conv, field), err_msg=name)
    channels = params.channels()
    assert all(channels[name] == COPIES * params.config.channels for name in SPLIT)


def test_copies_that_disagree_are_refused(tmp_path):
    """A file whose two copies were edited apart is not a split ELSR graph: refused, never silently folded."""
    model = perturbed()
    proto = build_int8_model(quant_params(calibrated_split(model)), model_metadata(model, "int8"))
    head = next(i for i in proto.graph.initializer if i.name == "head_w")
    weights = numpy_helper.to_array(head).copy()
    weights[weights.shape[0] // 2] += 2   # copies more than a half step apart
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


def test_files_whose_copies_share_their_weights_still_read(tmp_path):
    """INT8 files written before the copies had weights of their own hold each weight twice: they fold to half
    steps of 0 and give the same graph again."""
    model = on_int8_grid(perturbed())
    proto = build_int8_model(quant_params(calibrated_split(model)), model_metadata(model, "int8"))
    head = numpy_helper.to_array(next(i for i in proto.graph.initializer if i.name == "head_w"))
    c = model.config.channels
    np.testing.assert_array_equal(head[:c], head[c:2 * c])   # one int8 weight for both copies, as before
    save_model(proto, tmp_path / "shared_weights.onnx")
    read = quant_params_from_onnx(tmp_path / "shared_weights.onnx")
    assert all(not conv.half_step.any() for conv in read.convs.values())
    rebuilt = build_int8_model(read, model_metadata(model, "int8"))
    for before, after in zip(proto.graph.initializer, rebuilt.graph.initializer):
        np.testing.assert_array_equal(numpy_helper.to_array(after), numpy_helper.to_array(before), err_msg=before.name)


def test_split_qat_checkpoint_from_an_older_elsr_is_refused(tmp_path):
    q = calibrated_split(perturbed())
    save_qat_checkpoint(tmp_path / "qat.pt", q, [{"epoch": 1}])
    payload = torch.load(tmp_path / "qat.pt", weights_only=True)
    payload["version"] = 1
    torch.save(payload, tmp_path / "old.qat.pt")
    with pytest.raises(ElsrError, match="older elsr") as info:
        load_qat_checkpoint(tmp_path / "old.qat.pt")
    assert "old.qat.pt" in str(info.value) and "INT8 .onnx" in str(info.value)
