import csv
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from elsr.errors import ElsrError
from elsr.model.checkpoint import load_model, read_checkpoint, save_checkpoint
from elsr.model.network import ELSR, ModelConfig
from elsr.train.trainer import TrainConfig, Trainer, train
from tests.helpers import image_folder, tiny_schedule


@pytest.fixture
def data(tmp_path, rng):
    return image_folder(tmp_path / "train", rng, count=3, size=(64, 80)), image_folder(tmp_path / "val", rng, 2)


def config(tmp_path, data, out="run", **kw):
    schedule = kw.pop("schedule", None) or tiny_schedule(tmp_path / "tiny.yaml")
    return TrainConfig(schedule=schedule, train=data[0], val=data[1], out=tmp_path / out, device="cpu",
                       progress=False, **kw)


def weights(path):
    return read_checkpoint(path)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_run_writes_checkpoints_metrics_plots_and_transfers(tmp_path, data, caplog):
    with caplog.at_level(logging.INFO):
        summary = train(config(tmp_path, data))
    out = tmp_path / "run"
    for stage in ("stage1_x2", "stage2_x4"):
        assert (out / stage / "best.pt").is_file() and (out / stage / "last.pt").is_file()
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [(r["stage_name"], r["epoch"]) for r in rows] == [("x2", "1"), ("x2", "2"), ("x4", "1"), ("x4", "2")]
    assert float(rows[2]["lr"]) == pytest.approx(0.003) and float(rows[3]["lr"]) == pytest.approx(0.0015)
    assert all(float(r["bicubic_psnr_y"]) > 0 for r in rows)
    assert (out / "loss.png").stat().st_size > 1000 and (out / "psnr.png").stat().st_size > 1000
    model, ckpt = load_model(out / "model.pt", scale=4)
    assert ckpt["meta"]["stage"] == "x4" and summary["scale"] == 4
    assert "freshly initialised tail.weight, tail.bias" in caplog.text
    assert "transferred head.weight" in caplog.text


def test_same_seed_same_weights_and_resume_is_exact(tmp_path, data, monkeypatch):
    train(config(tmp_path, data, "a"))
    calls = {"n": 0}
    original = Trainer._save_epoch

    def save_then_die(self, *args, **kw):
        original(self, *args, **kw)
        calls["n"] += 1
        if calls["n"] == 3:  # mid-run: after epoch 1 of the x4 stage
            raise RuntimeError("killed")

    monkeypatch.setattr(Trainer, "_save_epoch", save_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        train(config(tmp_path, data, "b"))
    monkeypatch.setattr(Trainer, "_save_epoch", original)
    with pytest.raises(ElsrError, match="already exists"):
        train(config(tmp_path, data, "b"))
    train(config(tmp_path, data, "b", resume=True))
    assert_same_weights(weights(tmp_path / "a" / "model.pt"), weights(tmp_path / "b" / "model.pt"))
    assert len(list(csv.DictReader((tmp_path / "b" / "metrics.csv").open()))) == 4


def test_resume_with_another_schedule_is_refused(tmp_path, data):
    train(config(tmp_path, data))
    other = tiny_schedule(tmp_path / "other.yaml", lr=0.001)
    with pytest.raises(ElsrError, match="different schedule"):
        train(config(tmp_path, data, schedule=other, resume=True))


def overflowing_x4(path) -> str:
    """An x4 checkpoint whose weights are finite but so large that the second conv overflows to infinity: what a
    diverging run looks like (learning rates are bounded, so a schedule alone cannot make one in a few steps)."""
    model = ELSR(ModelConfig(scale=4))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(1e30)
    save_checkpoint(path, model)
    return str(path)


def test_nan_loss_stops_with_last_good_checkpoint_intact(tmp_path, data):
    path = tiny_schedule(tmp_path / "nan.yaml")
    spec = yaml.safe_load(path.read_text())
    spec["stages"][1]["init"] = overflowing_x4(tmp_path / "huge.pt")
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ElsrError, match="loss became (nan|inf)"):
        train(config(tmp_path, data, schedule=path))
    model, _ = load_model(tmp_path / "run" / "stage1_x2" / "best.pt")
    assert model.scale == 2
    assert not (tmp_path / "run" / "stage2_x4" / "last.pt").exists()


def test_weights_flag_transfers_x2_into_first_x4_stage(tmp_path, data, caplog):
    torch.manual_seed(5)
    save_checkpoint(tmp_path / "x2.pt", ELSR(ModelConfig(scale=2)))
    path = tiny_schedule(tmp_path / "x4only.yaml")
    spec = yaml.safe_load(path.read_text())
    spec["stages"] = [dict(spec["stages"][1], init="scratch")]
    path.write_text(yaml.safe_dump(spec))
    with caplog.at_level(logging.INFO):
        train(config(tmp_path, data, schedule=path, weights=tmp_path / "x2.pt"))
    assert "transferring weights from" in caplog.text and "freshly initialised tail.weight" in caplog.text


def run_cli(args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "elsr", "train", *args, "--no-progress", "--threads", "1"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigkill_mid_stage_then_resume_matches_uninterrupted_run(tmp_path, data):
    schedule = tiny_schedule(tmp_path / "kill.yaml", epochs=(3, 3), iters=25)
    common = ["--schedule", str(schedule), "--train", str(data[0]), "--val", str(data[1]), "--device", "cpu"]
    reference = run_cli([*common, "--out", str(tmp_path / "ref")], tmp_path)
    assert reference.wait(timeout=300) == 0, reference.stdout.read()

    out = tmp_path / "killed"
    proc = run_cli([*common, "--out", str(out)], tmp_path)
    marker = out / "stage1_x2" / "last.pt"
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)  # somewhere inside the next epoch
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for path in out.rglob("*.pt"):
        read_checkpoint(path)  # every checkpoint on disk is readable
    assert not list(out.rglob("*.tmp")) or all(p.name.startswith(".") for p in out.rglob("*.tmp"))

    resumed = run_cli([*common, "--out", str(out), "--resume"], tmp_path)
    log = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, log
    assert "resuming at stage" in log
    assert_same_weights(weights(tmp_path / "ref" / "model.pt"), weights(out / "model.pt"))


def test_bf16_autocast_on_cpu_trains_and_fp16_needs_cuda(tmp_path, data):
    trainer = Trainer(config(tmp_path, data, amp="bf16"))
    summary = trainer.run()
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert summary["scale"] == 4 and all(0 < float(r["loss"]) < 1 for r in rows)
    assert not trainer.channels_last  # auto: only on CUDA
    reference = read_checkpoint(tmp_path / "run" / "model.pt")["model"]["tail.weight"]
    assert reference.dtype == torch.float32  # autocast never changes the stored weights' dtype
    if not torch.cuda.is_available():
        with pytest.raises(ElsrError, match="--amp fp16 needs a CUDA GPU"):
            Trainer(config(tmp_path, data, "other", amp="fp16"))
    with pytest.raises(ElsrError, match="unknown --channels-last"):
        Trainer(config(tmp_path, data, "other", channels_last="maybe"))


@pytest.mark.parametrize("base", ["l1", "mse"])
def test_luma_weighted_loss(base):
    from elsr.data.metrics import BT601_Y
    from elsr.train.losses import loss_function

    torch.manual_seed(0)
    pred, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    plain = torch.nn.L1Loss() if base == "l1" else torch.nn.MSELoss()
    torch.testing.assert_close(loss_function(base)(pred, target), plain(pred, target))
    # an error with no luma (orthogonal to the BT.601 weights) costs nothing on luma alone
    w = torch.tensor(BT601_Y)
    chroma = torch.tensor([w[1], -w[0], 0.0]).view(1, 3, 1, 1) * 1e-3
    luma_only = loss_function(base, 1.0)
    assert float(luma_only(target + chroma, target)) < 1e-6 < float(plain(target + chroma, target))
    # a grey error e counts e on luma and on RGB, so every mix gives the plain loss
    grey = target + 0.1
    for weight in (0.0, 0.5, 1.0):
        torch.testing.assert_close(loss_function(base, weight)(grey, target), plain(grey, target))


def test_luma_weight_changes_the_training_and_is_logged(tmp_path, data, caplog):
    plain = tiny_schedule(tmp_path / "plain.yaml")
    spec = yaml.safe_load(plain.read_text())
    spec["stages"][1]["luma_weight"] = 0.9
    luma = tmp_path / "luma.yaml"
    luma.write_text(yaml.safe_dump(spec))
    train(config(tmp_path, data, out="plain", schedule=plain))
    with caplog.at_level(logging.INFO):
        train(config(tmp_path, data, out="luma", schedule=luma))
    assert "MSE (90% on luma)" in caplog.text
    a, b = weights(tmp_path / "plain" / "model.pt"), weights(tmp_path / "luma" / "model.pt")
    assert not torch.equal(a["tail.weight"], b["tail.weight"])  # same seed and data: only the loss differs


def test_max_steps_is_a_short_trial_that_resumes_with_the_same_cap(tmp_path, data, monkeypatch):
    steps = []
    original = torch.optim.Adam.step

    def counted(self, *args, **kw):
        steps.append(1)
        return original(self, *args, **kw)
    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    train(config(tmp_path, data, max_steps=5))
    assert 2 <= len(steps) <= 5  # the tiny schedule (2 x 3 + 2 x 3 steps) capped at 5, every stage kept
    saved = yaml.safe_load((tmp_path / "run" / "schedule.json").read_text())
    assert sum(s["epochs"] * s["iters_per_epoch"] for s in saved["stages"]) == len(steps)
    with pytest.raises(ElsrError, match="different schedule"):
        train(config(tmp_path, data, resume=True, max_steps=6))
