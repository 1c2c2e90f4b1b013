import pytest
import torch
import torch.nn.functional as F
import yaml

from elsr.model.checkpoint import load_model, read_checkpoint
from elsr.model.network import ELSR, ModelConfig, load_weights
from elsr.model.reparam import RepConv3x3
from elsr.train.trainer import TrainConfig, train
from tests.helpers import image_folder, tiny_schedule


def branch_conv(x: torch.Tensor, conv: RepConv3x3) -> torch.Tensor:
    """The branches evaluated one by one on the zero-padded input, then summed (as in ECBSR)."""
    padded = F.pad(x, (1, 1, 1, 1))
    out = F.conv2d(padded, conv.weight, conv.bias)
    out = out + F.conv2d(x, conv.point[:, :, None, None])
    out = out + F.conv2d(F.conv2d(padded, conv.expand[:, :, None, None], conv.expand_bias), conv.spatial)
    for e in range(3):
        kernel = (conv.edge_scale[e][:, None, None] * conv.edge_filters[e])[:, None]
        out = out + F.conv2d(F.conv2d(padded, conv.edge_point[e][:, :, None, None]), kernel,
                             groups=conv.out_channels)
    out = out + conv.edge_bias[:, None, None]
    return out + x if conv.identity else out


@pytest.mark.parametrize("channels", [(3, 6), (6, 6), (6, 48)])
def test_folded_kernel_equals_the_sum_of_branches(channels):
    torch.manual_seed(0)
    conv = RepConv3x3(*channels)
    with torch.no_grad():
        for p in (conv.expand_bias, conv.edge_bias, conv.edge_scale):
            p.normal_()
    x = torch.rand(2, channels[0], 9, 11)
    torch.testing.assert_close(conv(x), branch_conv(x, conv), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(conv.to_conv()(x), conv(x), atol=1e-6, rtol=1e-6)


def test_fold_gives_a_plain_model_with_the_same_output():
    torch.manual_seed(1)
    model = ELSR(ModelConfig(scale=4), reparam=True)
    x = torch.rand(1, 3, 12, 15)
    plain = model.fold()
    assert not plain.reparam and set(plain.state_dict()) == set(ELSR(ModelConfig(scale=4)).state_dict())
    torch.testing.assert_close(plain(x), model(x), atol=1e-6, rtol=1e-6)


def test_plain_weights_load_into_the_training_form_without_changing_the_function():
    torch.manual_seed(2)
    plain = ELSR(ModelConfig(scale=4))
    model = ELSR(ModelConfig(scale=4), reparam=True)
    load_weights(model, plain.state_dict(), "plain")
    x = torch.rand(1, 3, 10, 10)
    torch.testing.assert_close(model(x), plain(x), atol=1e-6, rtol=1e-6)
    model(x).mean().backward()  # every branch learns from there
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()
               if n.endswith((".point", ".spatial", ".edge_scale")))


def test_x2_plain_weights_transfer_into_a_x4_training_form():
    x2 = ELSR(ModelConfig(scale=2))
    model = ELSR(ModelConfig(scale=4), reparam=True)
    load_weights(model, x2.state_dict(), "x2", transfer=True)
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(model.head(x), x2.head(x), atol=1e-6, rtol=1e-6)


def test_reparam_run_writes_plain_checkpoints_and_resumes_its_branches(tmp_path, rng):
    data = image_folder(tmp_path / "train", rng, count=2, size=(48, 64)), image_folder(tmp_path / "val", rng, 1)
    path = tiny_schedule(tmp_path / "rep.yaml", epochs=(1, 2))
    spec = yaml.safe_load(path.read_text())
    spec["reparam"] = True
    path.write_text(yaml.safe_dump(spec))
    cfg = TrainConfig(schedule=path, train=data[0], val=data[1], out=tmp_path / "run", device="cpu", progress=False)
    summary = train(cfg)
    model, ckpt = load_model(tmp_path / "run" / "model.pt", scale=4)
    assert not model.reparam and "train_model" in ckpt
    trained = ELSR(ModelConfig(scale=4), reparam=True)
    load_weights(trained, ckpt["train_model"], "train_model")
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(trained(x), model(x), atol=1e-6, rtol=1e-6)
    state = read_checkpoint(tmp_path / "run" / "last.pt")
    assert any(k.endswith(".spatial") for k in state["train_model"])
    assert summary["scale"] == 4
