"""`python -m elsr.benchmarks`: help, a full run with every output, video mode, and one-line errors."""

import json
import os
import subprocess
import sys

from elsr.cli.bench import module_main as main
from tests.conftest import REPO


def test_help():
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "COLUMNS": "400"})
    assert out.returncode == 0, out.stderr
    for flag in ("--weights", "--onnx", "--data", "--size", "--runs", "--threads", "--backends", "--video",
                 "--video-backend", "--video-presets", "--video-codec", "--out", "--markdown", "--markdown-video",
                 "torch-compile"):
        assert flag in out.stdout


def test_full_run(models, tmp_path, capsys):
    argv = ["-q", "--weights", str(models.weights), "--onnx", str(models.fp32), str(models.int8), str(models.broken),
            "--data", str(models.hr), "--size", "24x32", "--runs", "3", "--warmup", "1", "--threads", "1",
            "--backends", "torch-cpu", "ort-*", "--video", str(models.frames), "--out", str(tmp_path / "bench"),
            "--markdown", str(tmp_path / "BENCHMARKS.md")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("| backend |") and "| ort-cpu | broken.onnx |" in out and "failed: " in out
    assert "| backend | threads | encoder | frames | end to end fps | encoder alone fps |" in out
    data = json.loads((tmp_path / "bench" / "results.json").read_text())
    # by default one video run: the fastest INT8 model, as `elsr upscale` runs an INT8 model by default
    assert [v["status"] for v in data["video"]] == ["ok"]
    assert data["video"][0]["backend"] == f"ort-cpu:{models.int8.name}" and data["video"][0]["precision"] == "int8 qat"
    assert data["video"][0]["frames"] == 5 and data["video"][0]["end_to_end_fps"] > 0
    assert (tmp_path / "bench" / "results.csv").is_file() and (tmp_path / "bench" / "latency_vs_psnr.png").is_file()
    markdown = (tmp_path / "BENCHMARKS.md").read_text()
    assert "python -m elsr.benchmarks -q --weights" in markdown and "Machine: " in markdown
    assert "## Video: `elsr upscale` end to end" in markdown and f"| ort-cpu:{models.int8.name} | 1 | libx264" in markdown


def test_video_backend_presets_and_the_section_alone(models, tmp_path, capsys):
    page = tmp_path / "BENCHMARKS.md"
    page.write_text("# ELSR benchmarks\n\nthe main table\n")
    argv = ["-q", "--weights", str(models.weights), "--size", "8x8", "--runs", "1", "--threads", "1",
            "--backends", "torch-cpu", "--video", str(models.frames), "--video-frames", "2",
            "--video-backend", "torch-cpu", "--video-presets", "ultrafast", "superfast", "--markdown-video", str(page)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| torch-cpu:model.pt | 1 | libx264 ultrafast crf 23 | 2 32x24 -> 128x96 |" in out
    assert "| torch-cpu:model.pt | 1 | libx264 superfast crf 23 | 2 32x24 -> 128x96 |" in out
    first = page.read_text()
    assert first.startswith("# ELSR benchmarks\n\nthe main table\n") and first.count("## Video") == 1
    assert "--markdown-video" in first   # the command that wrote the section
    assert main(argv) == 0   # a second run replaces the section
    second = page.read_text()
    assert second.count("## Video") == 1 and second.startswith("# ELSR benchmarks\n\nthe main table\n")


def test_user_errors_are_one_line(models, capsys):
    for argv, text in ((["--weights", str(models.weights), "--backends", "nosuch"], "matches no backend"),
                       (["--weights", str(models.weights), "--data", "/no/such/dir"], "no such folder"),
                       (["--size", "big"], "is not HEIGHTxWIDTH"),
                       (["--weights", str(models.weights), "--video-presets", "warp"], "unknown h264 preset"),
                       ([], "nothing to benchmark")):
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("elsr: error: ") and text in err[0], err


def test_as_an_elsr_subcommand(models, capsys):
    """`elsr bench` takes the same options as `python -m elsr.benchmarks`."""
    from elsr.cli.main import main as elsr_main

    assert elsr_main(["bench", "-q", "--onnx", str(models.fp32), "--size", "8x8", "--runs", "1",
                      "--threads", "1", "--backends", "ort-cpu"]) == 0
    assert "| ort-cpu | elsr_x4.onnx | fp32 | 1 |" in capsys.readouterr().out
