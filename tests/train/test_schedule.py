import math

import pytest
import yaml

from elsr.errors import ElsrError
from elsr.train.schedule import (SchedulerConfig, Stage, builtin_schedules, load_schedule, lr_for_epoch, parse_schedule,
                                 shorten)


def stage(**kw):
    base = {"name": "s", "scale": 4, "patch_size": 16, "batch_size": 4, "loss": "l1", "lr": 0.01,
            "epochs": 10, "init": "scratch"}
    return {**base, **kw}


def write(tmp_path, data):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_builtin_schedules_parse():
    assert {"quick", "seed", "paper", "luma", "x2"} <= set(builtin_schedules())
    assert [s.luma_weight for s in load_schedule("luma").stages] == [0.9]
    x2 = load_schedule("x2")
    assert {s.scale for s in x2.stages} == {2} and [s.loss for s in x2.stages] == ["l1", "l1", "mse", "mse"]
    assert x2.stages[0].init == "scratch" and x2.stages[-1].luma_weight == 0.9
    paper = load_schedule("paper")
    assert len(paper.stages) == 6
    assert [s.scale for s in paper.stages] == [2, 4, 4, 4, 4, 4]
    assert [s.loss for s in paper.stages] == ["l1", "l1", "l1", "mse", "mse", "mse"]
    assert paper.stages[1].init == "transfer"
    mse_lrs = [s.lr for s in paper.stages[3:]]
    assert mse_lrs == sorted(mse_lrs, reverse=True) and len(set(s.patch_size for s in paper.stages[3:])) == 3
    seed = load_schedule("seed")
    assert [(s.scale, s.loss, s.epochs, s.lr) for s in seed.stages] == [
        (2, "l1", 300, 0.02), (4, "l1", 250, 0.05), (4, "mse", 250, 0.005)]
    quick = load_schedule("quick")
    assert [s.scale for s in quick.stages] == [s.scale for s in paper.stages]
    assert [s.loss for s in quick.stages] == [s.loss for s in paper.stages]


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, {"name": "x", "stages": [stage(lr_decay=3)]})
    with pytest.raises(ElsrError) as err:
        load_schedule(path)
    assert "lr_decay" in str(err.value) and str(path) in str(err.value) and "allowed keys" in str(err.value)


@pytest.mark.parametrize("change, message", [
    ({"epochs": -3}, "epochs must be positive"),
    ({"epochs": "ten"}, "must be int"),
    ({"lr": 0}, "lr must be above 0 and at most 1"),
    ({"lr": 1e300}, "lr must be above 0 and at most 1"),
    ({"lr": float("nan")}, "lr must be above 0 and at most 1"),
    ({"weight_decay": float("inf")}, "weight_decay must be from 0 to 1"),
    ({"scheduler": {"name": "step", "gamma": 3.0}}, "gamma \\(a decay factor\\) above 0 and at most 1"),
    ({"loss": "huber"}, "loss must be one of"),
    ({"scale": 8}, "scale must be one of"),
    ({"init": "previous"}, "first stage cannot start"),
    ({"scheduler": {"name": "poly"}}, "scheduler.name"),
    ({"luma_weight": 1.0}, "luma_weight must be at least 0 and below 1"),
    ({"luma_weight": float("nan")}, "luma_weight must be at least 0 and below 1"),
])
def test_bad_values(tmp_path, change, message):
    with pytest.raises(ElsrError, match=message):
        load_schedule(write(tmp_path, {"name": "x", "stages": [stage(**change)]}))


def test_scale_change_needs_transfer():
    data = {"name": "x", "stages": [stage(name="a", scale=2), stage(name="b", init="previous")]}
    with pytest.raises(ElsrError, match="use init: transfer"):
        parse_schedule(data)
    data["stages"][1]["init"] = "transfer"
    assert parse_schedule(data).stages[1].transfers


def test_invalid_yaml_and_missing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ElsrError, match="invalid YAML"):
        load_schedule(bad)
    with pytest.raises(ElsrError, match="unknown schedule"):
        load_schedule("nonesuch")
    with pytest.raises(ElsrError, match="missing"):
        parse_schedule({"name": "x", "stages": [{"name": "a"}]})


def make(sched: dict, lr=1.0, epochs=10) -> Stage:
    return Stage(name="s", scale=4, patch_size=8, batch_size=2, loss="l1", lr=lr, epochs=epochs,
                 scheduler=SchedulerConfig(**sched))


def test_learning_rate_is_a_factor_per_epoch_not_lr_squared():
    step = make({"name": "step", "step_size": 2, "gamma": 0.5}, lr=0.02)
    assert [lr_for_epoch(step, e) for e in range(5)] == pytest.approx([0.02, 0.02, 0.01, 0.01, 0.005])
    multi = make({"name": "multistep", "milestones": [3, 6], "gamma": 0.1})
    assert [lr_for_epoch(multi, e) for e in (0, 3, 6)] == pytest.approx([1, 0.1, 0.01])
    cosine = make({"name": "cosine", "eta_min": 0.1}, epochs=5)
    assert lr_for_epoch(cosine, 0) == 1.0 and lr_for_epoch(cosine, 4) == pytest.approx(0.1)
    assert lr_for_epoch(cosine, 2) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_for_epoch(make({}), 7) == 1.0


def _stages(*shape: tuple[int, int]) -> list[Stage]:
    return [Stage(name=f"s{i}", scale=4, patch_size=8, batch_size=4, loss="l1", lr=1e-3, epochs=e, iters_per_epoch=k)
            for i, (e, k) in enumerate(shape)]


def test_length_rounds_epochs_as_before_and_scales_below_half_an_epoch():
    stages = _stages((6, 500), (8, 500), (1, 500))
    shorten(stages, [500, 500, 500], length=0.1)
    assert [(s.epochs, s.iters_per_epoch) for s in stages] == [(1, 500), (1, 500), (1, 50)]
    stages = _stages((6, 500), (8, 0))
    shorten(stages, [500, 120], length=0.01)  # one pass over an HDF5 file: 120 steps
    assert [(s.epochs, s.iters_per_epoch) for s in stages] == [(1, 30), (1, 10)]
    stages = _stages((6, 500))
    shorten(stages, [500], length=2)
    assert (stages[0].epochs, stages[0].iters_per_epoch) == (12, 500)


def test_max_steps_caps_the_whole_run():
    stages = _stages((6, 500), (8, 500), (6, 500), (12, 500), (8, 500), (6, 500))
    shorten(stages, [500] * 6, max_steps=300)
    total = sum(s.epochs * s.iters_per_epoch for s in stages)
    assert 300 - 6 <= total <= 300 and all(s.epochs >= 1 and s.iters_per_epoch >= 1 for s in stages)
    assert stages[3].epochs * stages[3].iters_per_epoch == 2 * stages[0].epochs * stages[0].iters_per_epoch
    tiny = _stages((3, 10), (3, 10))
    shorten(tiny, [10, 10], max_steps=1000)  # already shorter: unchanged
    assert [(s.epochs, s.iters_per_epoch) for s in tiny] == [(3, 10), (3, 10)]


@pytest.mark.parametrize("length, max_steps", [(0, None), (-1, None), (float("nan"), None), (1, 0)])
def test_impossible_lengths_are_refused(length, max_steps):
    with pytest.raises(ElsrError, match="--length must be positive|--max-steps must be at least 1"):
        shorten(_stages((1, 1)), [1], length=length, max_steps=max_steps)
