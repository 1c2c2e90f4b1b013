import pickle

import pytest
import torch

from elsr.errors import ElsrError
from elsr.model.checkpoint import load_model, read_checkpoint, save_checkpoint
from elsr.model.network import ELSR, ModelConfig


def test_round_trip_records_architecture(tmp_path):
    model = ELSR(ModelConfig(scale=3, prelu="channel"))
    save_checkpoint(tmp_path / "m.pt", model, {"note": "hi"})
    loaded, ckpt = load_model(tmp_path / "m.pt")
    assert loaded.config == model.config and ckpt["meta"]["note"] == "hi"
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    assert not loaded.training
    assert not list(tmp_path.glob(".*tmp")), "temporary files must not be left behind"


def test_bare_state_dict_is_accepted(tmp_path):
    model = ELSR(ModelConfig(scale=2))
    torch.save(model.state_dict(), tmp_path / "sd.pth")
    loaded, _ = load_model(tmp_path / "sd.pth")
    assert loaded.scale == 2


def test_wrong_scale_is_refused(tmp_path):
    save_checkpoint(tmp_path / "x2.pt", ELSR(ModelConfig(scale=2)))
    with pytest.raises(ElsrError, match="x2 model but x4 was asked"):
        load_model(tmp_path / "x2.pt", scale=4)


class RunsCode:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_pickle_that_runs_code_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open("evil.pt", "wb") as handle:
        pickle.dump({"model": RunsCode()}, handle)
    torch.save({"model": RunsCode()}, "evil2.pt")
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(ElsrError, match="refused|not a readable"):
            read_checkpoint(name)
    assert not (tmp_path / "PWNED").exists()


def test_truncated_and_foreign_files(tmp_path):
    save_checkpoint(tmp_path / "m.pt", ELSR())
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ElsrError, match="corrupt or truncated"):
        read_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "other.pt")
    with pytest.raises(ElsrError, match="not an ELSR checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    with pytest.raises(ElsrError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "missing.pt")


def test_other_architecture_is_refused(tmp_path):
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, tmp_path / "net.pt")
    with pytest.raises(ElsrError, match="not an ELSR state dict"):
        load_model(tmp_path / "net.pt")
