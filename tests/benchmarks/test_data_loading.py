"""The data-path benchmark: loading vs training throughput, and prepare's peak memory."""

from __future__ import annotations

import json

import numpy as np

from elsr.benchmarks import data_loading
from elsr.cli.data_loading import main as data_loading_main
from elsr.data.prepare import PrepareConfig, prepare
from elsr.io.images import read_image
from tests.helpers import image_folder


def test_throughput_reports_loading_training_and_both(tmp_path, rng, capsys):
    folder = image_folder(tmp_path / "imgs", rng, count=2, size=(64, 64))
    h5 = tmp_path / "p.h5"
    prepare(PrepareConfig(sources=[folder], out=h5, scales=(4,), patch_size=32, stride=16))
    out = tmp_path / "t.json"
    assert data_loading_main(["throughput", "--data", str(h5), "--patch", "6", "--batch", "4", "--iters", "3",
                              "--workers", "0,1", "--device", "cpu", "--threads", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["workers"] for r in result["loading"]] == [0, 1] == [r["workers"] for r in
                                                                 result["training_with_loading"]]
    assert all(r["samples_per_s"] > 0 for r in result["loading"] + result["training_with_loading"])
    assert result["training_step"]["samples_per_s"] > 0 and "training step" in result["verdict"]
    text = capsys.readouterr().out
    assert "| loading alone | 1 |" in text and "| training step alone" in text


def test_prepare_memory_measures_a_child_process_and_cleans_up(tmp_path):
    out = tmp_path / "m.json"
    assert data_loading_main(["prepare-memory", "--frames", "3", "--width", "96", "--height", "64",
                              "--work", str(tmp_path / "w"), "--scales", "4", "--patch-size", "32",
                              "--stride", "32", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["frames"] == 3 and result["peak_rss_mib"] > 10
    assert result["h5_bytes_per_frame"] > 6 * (32 * 32 * 3 + 8 * 8 * 3)  # 6 patches per frame, plus metadata
    assert result["reds_h5_gib"] > 0 and "18 patches from 3 images" in result["summary_line"]
    assert not (tmp_path / "w" / "frames").exists() and not (tmp_path / "w" / "prepared.h5").exists()


def test_generated_frames_use_the_reds_layout_and_are_reused(tmp_path):
    folder = data_loading.generate_frames(tmp_path / "f", 102, 24, 40)
    assert sorted(p.name for p in folder.iterdir()) == ["000", "001"]
    assert len(list((folder / "000").iterdir())) == 100
    frame = read_image(folder / "001" / "00000001.png")
    assert frame.shape == (24, 40, 3) and np.ptp(frame) > 50
    before = (folder / "000" / "00000000.png").stat().st_mtime_ns
    data_loading.generate_frames(tmp_path / "f", 102, 24, 40)
    assert (folder / "000" / "00000000.png").stat().st_mtime_ns == before
