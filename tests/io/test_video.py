"""elsr.io.video: frames, timestamps, copied streams, rotation, codecs and containers, and broken files."""

from pathlib import Path

import av
import numpy as np
import pytest

from elsr.errors import ElsrError
from elsr.io.video import (CODECS, CONTAINERS, EncodeSettings, Frame, OutputVideo, VideoReader, to_yuv420p,
                           video_info, video_writer)
from tests.helpers import damage, decoded_frames, flat_frames, noise_clip, sound_only, stream_packets, write_clip

VFR_MS = [0, 40, 80, 200, 240, 400, 433, 467]   # a variable frame rate: gaps and a 30 fps stretch


def copy_through(src: Path, dst: Path, settings: EncodeSettings = EncodeSettings(preset="ultrafast")) -> None:
    """What `elsr upscale` does with a video, minus the model: every frame re-encoded, every packet copied."""
    with VideoReader(src) as reader:
        info = reader.info
        with video_writer(dst, OutputVideo(info.width, info.height, info.fps, info.time_base, reader), settings) as out:
            for item in reader.items():
                if isinstance(item, Frame):
                    out.write(to_yuv420p(item.rgb, item.pts, item.duration))
                else:
                    out.mux(item)


@pytest.mark.parametrize("suffix, audio", [(".mp4", "aac"), (".mkv", "libopus")])
def test_timestamps_audio_and_subtitles_are_kept(tmp_path, suffix, audio):
    frames = flat_frames(len(VFR_MS))
    src = write_clip(tmp_path / f"in{suffix}", frames, fps=30, pts_ms=VFR_MS, audio=audio,
                     subtitles=suffix == ".mkv")
    copy_through(src, tmp_path / f"out{suffix}")
    before, after = decoded_frames(src), decoded_frames(tmp_path / f"out{suffix}")
    assert [t for t, _, _ in before] == pytest.approx([ms / 1000 for ms in VFR_MS], abs=1e-3)
    assert [t for t, _, _ in after] == [t for t, _, _ in before]
    for (_, a, _), (_, b, _) in zip(before, after):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2   # re-encoded, same picture
    assert stream_packets(tmp_path / f"out{suffix}", "audio") == stream_packets(src, "audio")  # byte for byte
    if suffix == ".mkv":
        assert stream_packets(tmp_path / f"out{suffix}", "subtitles") == stream_packets(src, "subtitles")
    with av.open(str(src)) as a, av.open(str(tmp_path / f"out{suffix}")) as b:
        assert b.duration == pytest.approx(a.duration, abs=35_000)   # microseconds: within one frame
    info = video_info(tmp_path / f"out{suffix}")
    assert (info.width, info.height) == (32, 24) and info.duration_s == pytest.approx(0.5, abs=0.034)
    if suffix == ".mp4":
        assert info.frames == len(VFR_MS)   # Matroska declares no count: estimated from the duration


def test_rotation_is_kept(tmp_path):
    src = write_clip(tmp_path / "in.mp4", flat_frames(3), rotation=90)
    assert VideoReader(src).info.display_matrix is not None
    copy_through(src, tmp_path / "out.mp4")
    assert [r for _, _, r in decoded_frames(tmp_path / "out.mp4")] == [90, 90, 90]


def test_colours_survive_the_round_trip(tmp_path):
    """Flat patches of saturated colours, encoded losslessly: the matrix we convert with is the one we tag (a
    BT.601 / BT.709 mix-up moves saturated red by about 20 levels)."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (200, 60, 120), (128, 128, 128)]
    image = np.concatenate([np.full((16, 16, 3), c, np.uint8) for c in colours], axis=1)
    with video_writer(tmp_path / "c.mkv", OutputVideo(image.shape[1], 16, 10),
                      EncodeSettings(crf=0, preset="ultrafast")) as out:
        out.write(to_yuv420p(image))
    (frame,) = [f.rgb for f in VideoReader(tmp_path / "c.mkv").frames()]
    centres = frame[8, 8::16].astype(int)
    assert np.abs(centres - np.array(colours)).max() <= 3


@pytest.mark.parametrize("codec", list(CODECS))
def test_every_codec_writes_a_readable_file(tmp_path, codec):
    suffix = ".webm" if codec == "vp9" else ".mkv"
    with video_writer(tmp_path / f"v{suffix}", OutputVideo(64, 48, 10), EncodeSettings(codec=codec)) as out:
        for rgb in flat_frames(3, 48, 64):
            out.write(to_yuv420p(rgb))
    with av.open(str(tmp_path / f"v{suffix}")) as written:
        assert written.streams.video[0].codec_context.name in (codec, "libvpx-vp9", "libdav1d", "av1")
    assert [f.index for f in VideoReader(tmp_path / f"v{suffix}").frames()] == [0, 1, 2]


def test_defaults_by_container():
    for suffix, container in CONTAINERS.items():
        encoding = EncodeSettings().resolve(Path(f"out{suffix}"))
        assert encoding.codec.name == container.codec and encoding.preset == encoding.codec.preset
    assert EncodeSettings().resolve(Path("out.mp4")).codec.encoder == "libx264"


@pytest.mark.parametrize("name, settings, problem", [
    ("out.webm", EncodeSettings(codec="h264"), "a .webm file cannot hold h264 video"),
    ("out.gif", EncodeSettings(), "cannot write .gif videos"),
    ("out.avi", EncodeSettings(), "cannot write .avi videos"),
    ("out.mp4", EncodeSettings(preset="warp"), "unknown h264 preset 'warp'"),
    ("out.mp4", EncodeSettings(crf=60), "--crf 60 is outside 0..51"),
    ("out.mp4", EncodeSettings(codec="mjpeg"), "unknown video codec"),
])
def test_settings_that_cannot_work_are_refused(name, settings, problem):
    with pytest.raises(ElsrError, match=problem):
        settings.resolve(Path(name))


def test_audio_the_container_cannot_hold_is_refused_and_nothing_is_left(tmp_path):
    src = write_clip(tmp_path / "in.mp4", flat_frames(3), audio="aac")
    with pytest.raises(ElsrError, match="cannot hold the input's aac audio stream"):
        copy_through(src, tmp_path / "out.webm", EncodeSettings())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_no_video_stream(tmp_path):
    with pytest.raises(ElsrError, match="no video stream in this file .audio streams only"):
        VideoReader(sound_only(tmp_path / "sound.mp4"))


@pytest.mark.parametrize("suffix, how, problem", [(".mkv", "truncated", "ends early"),
                                                  (".mp4", "corrupted", "broken after frame")])
def test_a_stream_that_breaks_mid_file(tmp_path, suffix, how, problem):
    path = damage(noise_clip(tmp_path / f"clip{suffix}"), how)
    with pytest.raises(ElsrError, match=problem):
        list(VideoReader(path).frames())


def test_garbage_is_refused_on_opening(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2048))
    with pytest.raises(ElsrError, match="cannot open video"):
        VideoReader(tmp_path / "x.mp4")
