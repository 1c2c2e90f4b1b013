"""Every exported ONNX graph ends in a DCR DepthToSpace (the mode NNAPI and CoreML's NeuralNetwork take), with the
tail conv's output channels permuted so its pixels are exactly PixelShuffle's (a CRD DepthToSpace)."""

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from elsr.export.formats import onnx_model
from elsr.export.onnx_int8 import quant_params_from_onnx
from elsr.export.request import ExportRequest
from elsr.model.network import ELSR, ModelConfig, dcr_order
from elsr.quant.fake_quant import QuantELSR
from elsr.quant.params import quant_params
from elsr.runtime.onnx_model import graph_session
from tests.helpers import observe_ranges

CONFIGS = [ModelConfig(scale=2), ModelConfig(scale=3, prelu="channel"), ModelConfig(scale=4)]
TAIL = {"fp32": ("tail.weight", "tail.bias"), "int8": ("tail_w", "tail_w_scale", "tail_b", "tail_b_scale")}


def models(config: ModelConfig) -> tuple[ELSR, QuantELSR]:
    torch.manual_seed(config.scale)
    model = ELSR(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model, observe_ranges(QuantELSR(model), size=20, seeded=True)


def as_crd(proto: onnx.ModelProto, scale: int, names: tuple[str, ...]) -> onnx.ModelProto:
    """The same graph with PixelShuffle's own order: the tail's output channels put back, DepthToSpace in CRD."""
    crd = onnx.ModelProto.FromString(proto.SerializeToString())
    back = np.argsort(dcr_order(scale))
    for init in crd.graph.initializer:
        if init.name in names:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init)[back], init.name))
    (d2s,) = [n for n in crd.graph.node if n.op_type == "DepthToSpace"]
    d2s.attribute.remove(next(a for a in d2s.attribute if a.name == "mode"))
    d2s.attribute.append(helper.make_attribute("mode", "CRD"))
    return crd


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"x{c.scale}-{c.prelu}")
def test_dcr_gives_pixel_shuffle_bit_for_bit(config, precision, rng):
    model, qmodel = models(config)
    proto = onnx_model(ExportRequest(model, qmodel=qmodel if precision == "int8" else None))
    (d2s,) = [n for n in proto.graph.node if n.op_type == "DepthToSpace"]
    assert helper.get_attribute_value(next(a for a in d2s.attribute if a.name == "mode")) == b"DCR"
    crd = as_crd(proto, config.scale, TAIL[precision])
    x = rng.random((2, 3, 23, 31), dtype=np.float32)
    if precision == "int8":
        x = (np.round(x * 255) / 255).astype(np.float32)
    got = graph_session(proto.SerializeToString()).run(None, {"lr": x})[0]
    np.testing.assert_array_equal(got, graph_session(crd.SerializeToString()).run(None, {"lr": x})[0])
    with torch.no_grad():
        reference = (qmodel if precision == "int8" else model)(torch.from_numpy(x)).numpy()
    assert np.abs(got - reference).max() <= (1 / 255 + 1e-6 if precision == "int8" else 1e-5)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"x{c.scale}-{c.prelu}")
def test_int8_parameters_read_back_in_pytorch_order(config, tmp_path):
    _, qmodel = models(config)
    path = tmp_path / "q.onnx"
    onnx.save_model(onnx_model(ExportRequest(models(config)[0], qmodel=qmodel)), str(path))
    read, original = quant_params_from_onnx(path), quant_params(qmodel)
    for name, conv in original.convs.items():
        for key in ("weight", "weight_scale", "bias", "bias_scale"):
            np.testing.assert_array_equal(getattr(read.convs[name], key), getattr(conv, key), err_msg=f"{name}.{key}")


def test_fixed_shape_graphs_are_dcr_too():
    model, qmodel = models(ModelConfig(scale=4))
    for request in (ExportRequest(model, fixed_shape=(1, 3, 18, 32)),
                    ExportRequest(model, qmodel=qmodel, fixed_shape=(1, 3, 18, 32))):
        modes = [helper.get_attribute_value(a) for n in onnx_model(request).graph.node if n.op_type == "DepthToSpace"
                 for a in n.attribute if a.name == "mode"]
        assert modes == [b"DCR"]
