"""Video mode of the benchmark, test clips, and the upscaler's memory on long videos.

:func:`run_video` times ``elsr upscale``'s own code path (:func:`elsr.runtime.upscale.upscale_video`: decode,
super-resolve and encode overlapping in threads, audio copied) against the encoder alone on the same
frames with the same settings, measured in alternation in one run, and splits the pipeline's time into
decoding, super-resolution, encoding and waiting. :func:`make_clip` writes a test video from a frame folder
(H.264 or another codec, a sine tone as AAC or Opus audio, optionally a subtitle track, the frames looped
``loops`` times). :func:`compare_videos` says what an upscale kept of its source (frames, their times, copied
streams byte for byte). :func:`upscale_memory` runs ``elsr upscale`` on clips of different lengths in child
processes and reports each one's peak resident memory (``python -m elsr.benchmarks.video``).
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from elsr.benchmarks.large_image import run_limited
from elsr.errors import ElsrError
from elsr.io.images import list_images, read_image
from elsr.io.video import CONTAINERS, EncodeSettings, OutputVideo, ffmpeg_url, to_yuv420p, video_writer
from elsr.runtime.base import Upscaler
from elsr.runtime.pipeline import PipelineStats
from elsr.runtime.upscale import Renderer, open_source, upscale_video

WARMUP_CALLS = 2
ROUNDS = 3              # encoder alone and end to end, alternately; the median of each
AUDIO_RATE = 48000
TONE_HZ = 440.0
AUDIO_BLOCK = 1024      # samples per audio frame handed to the encoder (PyAV re-blocks them to its frame size)
AUDIO_CODECS = {"aac": "aac", "opus": "libopus"}
FRAME_MS = ("decode", "super-resolve", "encode")


@dataclass
class Timed:
    seconds: float          # wall time
    cpu_seconds: float      # CPU time of the whole process, every thread: what the work costs, whatever else runs
    stats: PipelineStats | None = None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed_encode(frames: list[av.VideoFrame], spec: OutputVideo, settings: EncodeSettings, path: Path) -> Timed:
    """Encoding ``frames`` (already yuv420p) and writing them to ``path``: the encoder alone."""
    started, cpu = time.perf_counter(), _cpu_seconds()
    with video_writer(path, spec, settings) as writer:
        for frame in frames:
            writer.write(frame)
    return Timed(time.perf_counter() - started, _cpu_seconds() - cpu)


def _timed_pipeline(source: Path, renderer: Renderer, settings: EncodeSettings, limit: int, path: Path) -> Timed:
    """`elsr upscale`'s video path end to end (opening, decoding, super-resolving, encoding, flushing)."""
    started, cpu = time.perf_counter(), _cpu_seconds()
    opened = open_source(source, convert=True, copy_streams=True, same_size=True, limit=limit)
    try:
        stats = upscale_video(opened, renderer, path, settings)
    finally:
        opened.close()
    return Timed(time.perf_counter() - started, _cpu_seconds() - cpu, stats)


def run_video(source: Path, runner: Upscaler, settings: EncodeSettings = EncodeSettings(), limit: int = 0,
              rounds: int = ROUNDS) -> dict:
    """End-to-end fps of upscaling ``source`` (a video file or a frame folder) to a video with ``settings`` (in
    ``source``'s container where we write it, else .mp4, as `elsr upscale` would be asked to), the
    encoder's fps alone on the same super-resolved frames with the same settings, super-resolution alone, and
    where the pipeline's time went (ms per frame, the median end-to-end round)."""
    load_before = os.getloadavg()[0]
    renderer = Renderer(runner)
    opened = open_source(source, convert=True, copy_streams=False, same_size=True, limit=limit)
    try:
        lr = list(opened.items)
        copied = len(opened.video.copied) if opened.video else 0
        info = opened.video.info if opened.video else None
    finally:
        opened.close()
    if not lr:
        raise ElsrError("no frames decoded", path=source)
    for _ in range(WARMUP_CALLS):  # untimed: lazy initialisation, torch.compile for this frame size
        renderer.frame(lr[0].rgb)
    started, cpu = time.perf_counter(), _cpu_seconds()
    sr = [renderer.frame(frame.rgb) for frame in lr]
    sr_s, sr_cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    started = time.perf_counter()
    encoded = [to_yuv420p(image, frame.pts, frame.duration) for image, frame in zip(sr, lr)]
    convert_s = time.perf_counter() - started
    height, width = sr[0].shape[:2]
    spec = OutputVideo(width, height, info.fps if info else OutputVideo.fps, info.time_base if info else None)
    encoder_runs, pipeline_runs = [], []
    with tempfile.TemporaryDirectory(prefix="elsr-bench-video-") as tmp:
        suffix = source.suffix.lower() if source.suffix.lower() in CONTAINERS else ".mp4"
        alone, piped = Path(tmp) / f"encoder{suffix}", Path(tmp) / f"pipeline{suffix}"
        for _ in range(rounds):
            encoder_runs.append(_timed_encode(encoded, spec, settings, alone))
            pipeline_runs.append(_timed_pipeline(source, renderer, settings, limit, piped))
        size = piped.stat().st_size
    median = sorted(pipeline_runs, key=lambda run: run.seconds)[len(pipeline_runs) // 2]
    stats, frames = median.stats, len(lr)
    encoding = settings.resolve(piped)
    per_frame = {f"{s.name}_ms": 1000 * s.busy_s / frames for s in stats.stages}
    per_frame.update({f"{s.name}_wait_ms": 1000 * s.wait_s / frames for s in stats.stages})
    per_frame["open_flush_ms"] = 1000 * (median.seconds - stats.wall_s) / frames
    e2e, encoder = frames / median.seconds, frames / statistics.median(run.seconds for run in encoder_runs)
    return {"source": str(source), "frames": frames, "scale": renderer.scale,
            "input_size": f"{lr[0].rgb.shape[1]}x{lr[0].rgb.shape[0]}", "output_size": f"{width}x{height}",
            "container": encoding.container.suffix, "codec": encoding.codec.name, "encoder": encoding.codec.encoder,
            "preset": encoding.preset, "crf": encoding.crf, "encoder_threads": encoding.threads,
            "copied_streams": copied, "output_bytes": size, "rounds": rounds,
            "end_to_end_fps": e2e, "encoder_fps": encoder,
            "end_to_end_vs_encoder": e2e / encoder, "end_to_end_fps_runs": [frames / r.seconds for r in pipeline_runs],
            "encoder_fps_runs": [frames / r.seconds for r in encoder_runs], "sr_fps": frames / sr_s,
            "end_to_end_cpu_ms": 1000 * statistics.median(r.cpu_seconds for r in pipeline_runs) / frames,
            "encoder_cpu_ms": 1000 * statistics.median(r.cpu_seconds for r in encoder_runs) / frames,
            "sr_cpu_ms": 1000 * sr_cpu / frames,
            "convert_ms": 1000 * convert_s / frames, "split_ms_per_frame": per_frame, "queue_depth": stats.depth,
            "peak_queued": stats.peak_queued, "load_average": [load_before, os.getloadavg()[0]]}


# ---------------------------------------------------------------- test clips


@dataclass
class ClipConfig:
    frames: Path                  # a folder of frames (sorted by name)
    out: Path                     # .mp4, .mkv, .mov, .webm
    fps: float = 25.0
    audio: str | None = "aac"     # aac, opus or None
    subtitles: bool = False       # a subtitle track (SubRip), one cue per second
    loops: int = 1                # the frames this many times over
    codec: EncodeSettings = field(default_factory=lambda: EncodeSettings(preset="medium"))


def make_clip(cfg: ClipConfig) -> Path:
    """A test video: the frames of ``cfg.frames`` (``loops`` times) at ``fps``, a 440 Hz tone for its whole length
    as AAC or Opus, optionally SubRip subtitles (one cue a second), interleaved as a recorder writes them.
    Returns ``cfg.out``."""
    if cfg.audio is not None and cfg.audio not in AUDIO_CODECS:
        raise ElsrError(f"unknown audio codec {cfg.audio!r}", fix=f"use one of {', '.join(AUDIO_CODECS)}")
    files = list_images(cfg.frames, recursive=False)
    first = read_image(files[0], convert=True)
    with video_writer(cfg.out, OutputVideo(first.shape[1], first.shape[0], cfg.fps), cfg.codec) as writer:
        output = writer.output
        audio = output.add_stream(AUDIO_CODECS[cfg.audio], rate=AUDIO_RATE, layout="mono") if cfg.audio else None
        text = output.add_mux_stream("subrip") if cfg.subtitles else None
        if text is not None:
            text.time_base = Fraction(1, 1000)
        samples = cues = 0
        for index in range(len(files) * cfg.loops):
            writer.write(to_yuv420p(read_image(files[index % len(files)], convert=True)))
            until = (index + 1) / cfg.fps
            while audio is not None and samples < round(until * AUDIO_RATE):
                count = min(AUDIO_BLOCK, round(until * AUDIO_RATE) - samples)
                output.mux(audio.encode(_tone(samples, count)))
                samples += count
            while text is not None and cues < until:
                output.mux(_cue(text, cues))
                cues += 1
        if audio is not None:
            output.mux(audio.encode(None))
    return cfg.out


def _tone(start: int, count: int) -> av.AudioFrame:
    """``count`` samples of a 440 Hz sine from sample ``start`` (mono, 48 kHz)."""
    t = (start + np.arange(count)) / AUDIO_RATE
    frame = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)[None],
                                       format="flt", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
    return frame


def _cue(stream, second: int) -> av.Packet:
    packet = av.Packet(f"second {second + 1}".encode())
    packet.stream, packet.time_base = stream, Fraction(1, 1000)
    packet.pts = packet.dts = second * 1000
    packet.duration = 800
    return packet


# ---------------------------------------------------------------- what an upscale kept


def _streams(path: Path) -> dict:
    """Per stream: kind, codec, and its packets (bytes, time, duration); the video's frame size, rate, frame times
    (and where its last frame ends) and rotation; the file's duration. Frames are decoded one at a time."""
    with av.open(ffmpeg_url(path)) as container:
        streams, video = list(container.streams), container.streams.video[0]
        packets: dict[int, list] = {s.index: [] for s in streams}
        times, first, end = [], None, 0.0
        for packet in container.demux():
            if packet.stream is not video:
                if packet.size:
                    packets[packet.stream.index].append(
                        (bytes(packet), packet.pts and packet.pts * packet.time_base, packet.duration))
                continue
            for frame in packet.decode():
                first = first or frame
                times.append(frame.time)
                end = frame.time + float(frame.duration * frame.time_base)
        return {"duration_s": container.duration / av.time_base if container.duration else None,
                "video": {"codec": video.codec_context.name, "size": f"{first.width}x{first.height}",
                          "rate": str(video.average_rate), "frames": len(times), "rotation": first.rotation,
                          "first_s": times[0], "last_s": times[-1], "end_s": end},
                "others": [(s.type, s.codec_context.name if s.codec_context else s.codec.name, packets[s.index])
                           for s in streams if s.type != "video"], "times": times}


def compare_videos(source: Path, output: Path) -> dict:
    """What ``output`` (an upscale of ``source``) kept: frame count, frame times, rate, duration, rotation, and
    for every audio/subtitle stream whether its packets are byte for byte the source's."""
    a, b = _streams(source), _streams(output)
    copied = [{"stream": f"{kind} {codec}", "packets": len(packets), "output_packets": len(theirs),
               "bytes_identical": [p[0] for p in packets] == [p[0] for p in theirs],
               "times_identical": [p[1:] for p in packets] == [p[1:] for p in theirs]}
              for (kind, codec, packets), (_, _, theirs) in zip(a["others"], b["others"])]
    return {"source": {"file": str(source), "duration_s": a["duration_s"], **a["video"]},
            "output": {"file": str(output), "duration_s": b["duration_s"], **b["video"]},
            "frame_times_identical": a["times"] == b["times"],
            "streams_in_source": len(a["others"]), "streams_in_output": len(b["others"]), "copied": copied}


# ---------------------------------------------------------------- memory on long videos


@dataclass
class MemoryConfig:
    frames: Path                        # frame folder the clips are made of
    loops: list[int] = field(default_factory=lambda: [1, 10])
    fps: float = 25.0
    audio: str | None = "aac"
    upscale_args: list[str] = field(default_factory=list)   # extra `elsr upscale` options (--model, --preset, ...)


def upscale_memory(cfg: MemoryConfig) -> list[dict]:
    """For each ``loops``: a clip of the frames that many times over, `elsr upscale`d in a child process; its frame
    count, wall time and peak resident memory (the kernel's high-water mark, as /usr/bin/time -v reports it)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="elsr-video-memory-") as tmp:
        for loops in cfg.loops:
            clip = make_clip(ClipConfig(cfg.frames, Path(tmp) / f"clip{loops}.mp4", cfg.fps, cfg.audio, loops=loops))
            out = Path(tmp) / f"big{loops}.mp4"
            command = [sys.executable, "-m", "elsr", "upscale", "-q", "--no-progress", "--input", str(clip),
                       "--output", str(out), *cfg.upscale_args]
            run = run_limited(command, limit_mb=float(2**20))   # no real limit: the high-water mark is the figure
            with av.open(ffmpeg_url(out)) as written:
                frames = written.streams.video[0].frames
            results.append({"loops": loops, "frames": frames, "exit_code": run["exit_code"],
                            "seconds": run["seconds"], "peak_rss_mb": run["peak_rss_mb"],
                            "fps": round(frames / run["seconds"], 1) if run["seconds"] else None,
                            "command": "elsr " + " ".join(command[3:]).replace(tmp, "TMP")})
            clip.unlink()
            out.unlink()
    return results
