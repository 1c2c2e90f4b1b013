"""Video mode: a few generated frames, decoded, super-resolved and encoded; fps reported."""

import cv2
import numpy as np
import pytest

from elsr.benchmarks.video import decode_frames, run_video
from elsr.errors import ElsrError
from elsr.runtime.onnx_model import OnnxUpscaler


def test_frames_folder(models):
    report = run_video(models.frames, OnnxUpscaler(models.fp32, threads=1))
    assert (report["frames"], report["input_size"], report["output_size"]) == (5, "32x24", "128x96")
    assert 0 < report["end_to_end_fps"] <= report["sr_fps"] <= report["model_fps"]
    assert report["output_bytes"] > 0 and report["codec"] == "mp4v"


def test_video_file_and_limit(models, tmp_path):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (32, 24))
    for frame in decode_frames(models.frames):
        writer.write(frame)
    writer.release()
    assert len(list(decode_frames(path))) == 5
    report = run_video(path, OnnxUpscaler(models.fp32, threads=1), limit=3)
    assert report["frames"] == 3 and report["scale"] == 4


def test_not_a_video(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(np.zeros(100, np.uint8).tobytes())
    with pytest.raises(ElsrError):
        list(decode_frames(bad))
