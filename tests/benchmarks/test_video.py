"""Video mode: `elsr upscale`'s pipeline against the encoder alone on a few generated frames; test clips; memory."""

import json

import av
import pytest

from elsr.benchmarks.video import ClipConfig, MemoryConfig, make_clip, run_video, upscale_memory
from elsr.errors import ElsrError
from elsr.io.video import EncodeSettings
from elsr.runtime.onnx_model import OnnxUpscaler
from tests.helpers import stream_packets


def test_frames_folder(models):
    report = run_video(models.frames, OnnxUpscaler(models.fp32, threads=1), rounds=2)
    assert (report["frames"], report["input_size"], report["output_size"]) == (5, "32x24", "128x96")
    assert (report["encoder"], report["preset"], report["crf"]) == ("libx264", "superfast", 23)
    assert report["end_to_end_fps"] > 0 and report["encoder_fps"] > 0 and report["sr_fps"] > 0
    assert report["end_to_end_cpu_ms"] > 0 and report["encoder_cpu_ms"] >= 0 and report["sr_cpu_ms"] >= 0
    assert len(report["end_to_end_fps_runs"]) == len(report["encoder_fps_runs"]) == 2
    assert report["end_to_end_vs_encoder"] == pytest.approx(report["end_to_end_fps"] / report["encoder_fps"])
    split = report["split_ms_per_frame"]
    assert {"decode_ms", "super-resolve_ms", "encode_ms", "encode_wait_ms"} <= set(split) and split["encode_ms"] > 0
    assert report["output_bytes"] > 0 and report["copied_streams"] == 0


def test_clip_with_audio_and_subtitles_and_a_limit(models, tmp_path):
    clip = make_clip(ClipConfig(models.frames, tmp_path / "clip.mkv", fps=10, audio="opus", subtitles=True, loops=2))
    with av.open(str(clip)) as container:
        assert sorted(s.type for s in container.streams) == ["audio", "subtitle", "video"]
        assert len(list(container.decode(video=0))) == 10
    assert len(stream_packets(clip, "subtitles")) == 1 and stream_packets(clip, "audio")
    report = run_video(clip, OnnxUpscaler(models.fp32, threads=1), EncodeSettings(preset="ultrafast"), limit=3,
                       rounds=1)
    assert report["frames"] == 3 and report["scale"] == 4 and report["preset"] == "ultrafast"
    assert report["copied_streams"] == 2


def test_not_a_video(models, tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(bytes(100))
    with pytest.raises(ElsrError, match="cannot open video"):
        run_video(bad, OnnxUpscaler(models.fp32, threads=1))


def test_memory_runs_elsr_upscale_on_clips_of_each_length(models):
    results = upscale_memory(MemoryConfig(models.frames, loops=[1, 2], fps=10, audio=None,
                                          upscale_args=["--model", str(models.int8), "--preset", "ultrafast"]))
    assert [(r["loops"], r["frames"], r["exit_code"]) for r in results] == [(1, 5, 0), (2, 10, 0)]
    assert all(r["peak_rss_mb"] > 50 for r in results)


def test_command_line_clip_then_check_what_an_upscale_kept(models, tmp_path, capsys):
    from elsr.cli.main import main as elsr
    from elsr.cli.video_bench import main

    clip, big = tmp_path / "clip.mkv", tmp_path / "big.mkv"
    frames = ["--frames", str(models.frames), "--fps", "10"]
    assert main(["clip", *frames, "--out", str(clip), "--audio", "opus", "--subtitles"]) == 0
    assert main(["clip", *frames, "--out", str(clip)]) == 2 and "output exists" in capsys.readouterr().err
    assert elsr(["upscale", "-q", "--model", str(models.int8), "--input", str(clip), "--output", str(big),
                 "--preset", "ultrafast", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["check", "--input", str(clip), "--output", str(big)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frame_times_identical"] and report["output"]["size"] == "128x96"
    assert report["output"]["frames"] == report["source"]["frames"] == 5
    assert [(c["stream"], c["bytes_identical"], c["times_identical"]) for c in report["copied"]] == [
        ("audio opus", True, True), ("subtitle srt", True, True)]
