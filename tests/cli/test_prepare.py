"""``elsr prepare``'s options become the library's PrepareConfig."""

import argparse

import h5py

from elsr.cli.prepare import add_arguments, run
from tests.helpers import smooth_image, write_png


def test_cli_arguments(tmp_path, rng, capsys):
    write_png(tmp_path / "in" / "a.png", smooth_image(rng, 32, 32))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "cli.h5"
    args = parser.parse_args([str(tmp_path / "in"), "--out", str(out), "--scales", "4,2",
                              "--patch-size", "16", "--stride", "16"])
    assert run(args) == 0
    assert "4 patches" in capsys.readouterr().out
    with h5py.File(out, "r") as f:
        assert list(f.attrs["scales"]) == [4, 2] and f["lr"] == f["lr_x4"]
    args = parser.parse_args([str(tmp_path / "in"), "--out", str(out), "--scales", "2", "4", "--overwrite"])
    assert args.overwrite and [s for g in args.scales for s in g] == [2, 4]
