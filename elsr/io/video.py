"""Reading and writing videos with FFmpeg (PyAV): uint8 RGB frames in and out, each converted once.

Reading takes any container and codec FFmpeg reads. Writing: H.264 (libx264) by default in .mp4, .mov
and .mkv, VP9 in .webm; HEVC (libx265), AV1 (SVT-AV1) and VP9 on request, yuv420p (BT.601, tagged),
with a CRF and a preset. Audio and subtitle streams are copied packet for packet (never re-encoded); every
video frame keeps its own timestamp and duration (a variable frame rate survives), and the display
matrix (rotation) is carried over. Bad input is an :class:`ElsrError` naming the file: no video
stream, a stream that breaks or ends early, a container that cannot hold a codec, a suffix we cannot
write. The output appears (renamed from a temporary name) only when complete.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from elsr.errors import ElsrError
from elsr.io.files import atomic_path

log = logging.getLogger(__name__)

# Suffixes that mark an input file as a video (FFmpeg reads more; rename such a file to one of these).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
                  ".flv", ".wmv", ".3gp", ".ogv", ".y4m")
DEFAULT_FPS = 30.0
MIN_FPS, MAX_FPS = 0.01, 1000.0          # frame rates outside are a typo or broken timing (a frame per 100 s ...)
PIXEL_FORMAT = "yuv420p"
COPIED_KINDS = ("audio", "subtitle")      # streams remuxed packet for packet
REENCODE_FIX = "re-encode it (e.g. to H.264 .mp4) or extract its frames to PNG"
BT601 = 6                                 # AVCOL_SPC_SMPTE170M: the matrix we convert RGB with, and tag
MPEG_RANGE = 1                            # AVCOL_RANGE_MPEG: limited (16-235) range, what players expect
TRUNCATION_FRAMES = 2                     # a stream that ends this many frames early is broken
DROPPED_METADATA = {"encoder", "major_brand", "minor_version", "compatible_brands", "handler_name", "vendor_id",
                    "duration"}           # written anew by the muxer (or wrong after re-encoding)


@dataclass(frozen=True)
class VideoCodec:
    """A video codec we write: its FFmpeg encoder, quality scale and speed presets."""

    name: str                    # the --codec value
    encoder: str                 # the FFmpeg encoder
    crf: int                     # default constant-rate factor (lower: better and bigger)
    max_crf: int
    presets: tuple[str, ...]     # fastest first
    preset: str                  # default preset
    extra: tuple[tuple[str, str], ...] = ()   # fixed encoder options

    def options(self, crf: int, preset: str) -> dict[str, str]:
        speed = {"cpu-used": preset} if self.name == "vp9" else {"preset": preset}
        return {"crf": str(crf), **speed, **dict(self.extra)}


X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# superfast: the fastest x264 preset that keeps B-frames and CABAC (about a third smaller than ultrafast at the
# same CRF); 100 frames 1280x720 encode at about 100 fps on 2 cores, and the whole pipeline keeps up with it
# (README.md, section Video, and `elsr bench --video`).
CODECS: dict[str, VideoCodec] = {c.name: c for c in (
    VideoCodec("h264", "libx264", 23, 51, X26X_PRESETS, "superfast"),
    VideoCodec("hevc", "libx265", 28, 51, X26X_PRESETS, "superfast", (("x265-params", "log-level=error"),)),
    VideoCodec("av1", "libsvtav1", 35, 63, tuple(str(p) for p in range(13, -1, -1)), "8"),
    VideoCodec("vp9", "libvpx-vp9", 31, 63, tuple(str(p) for p in range(8, -1, -1)), "8",
               (("b", "0"), ("deadline", "realtime"), ("row-mt", "1"))),
)}


@dataclass(frozen=True)
class Container:
    suffix: str
    format: str      # FFmpeg's muxer
    codec: str       # default video codec


CONTAINERS: dict[str, Container] = {c.suffix: c for c in (
    Container(".mp4", "mp4", "h264"), Container(".mov", "mov", "h264"), Container(".mkv", "matroska", "h264"),
    Container(".webm", "webm", "vp9"),
)}
WRITABLE = ", ".join(CONTAINERS)
MAX_CRF = max(codec.max_crf for codec in CODECS.values())


def ffmpeg_url(path: Path) -> str:
    """A local file as FFmpeg must be told: with its file protocol named, so that a name such as ``pipe:1.mp4``
    or ``concat:a|b.mp4`` is that file and never another protocol (a pipe, other files, the network)."""
    return f"file:{path}"


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def container_for(path: Path) -> Container:
    """The container of an output name; ElsrError for a suffix we cannot write (.gif, .avi, .txt, ...)."""
    found = CONTAINERS.get(path.suffix.lower())
    if found is None:
        raise ElsrError(f"cannot write {path.suffix or 'suffix-less'} videos", path=path,
                        fix=f"name it {WRITABLE}, or give a folder name without a suffix for PNG frames")
    return found


def _holds(container: Container, codec_name: str) -> bool:
    """Whether FFmpeg's muxer for ``container`` can store ``codec_name``."""
    with av.open(io.BytesIO(), "w", format=container.format) as probe:
        return codec_name in probe.supported_codecs


@dataclass(frozen=True)
class EncodeSettings:
    """How to encode a video (a ``None`` field: the container's or codec's default)."""

    codec: str | None = None     # h264, hevc, av1, vp9
    crf: int | None = None
    preset: str | None = None
    threads: int = 0             # encoder threads; 0: the encoder's own choice (all cores)

    def resolve(self, path: Path) -> Encoding:
        """The settings for writing ``path``, defaults filled in; ElsrError for a choice that cannot work."""
        container = container_for(path)
        codec = CODECS.get(self.codec or container.codec)
        if codec is None:
            raise ElsrError(f"unknown video codec {self.codec!r}", fix=f"use one of {', '.join(CODECS)}")
        if not _holds(container, codec.name):
            can = [name for name in CODECS if _holds(container, name)]
            raise ElsrError(f"a {container.suffix} file cannot hold {codec.name} video", path=path,
                            fix=f"use --codec {' or '.join(can)}, or write .mkv")
        crf = codec.crf if self.crf is None else self.crf
        if not 0 <= crf <= codec.max_crf:
            raise ElsrError(f"--crf {crf} is outside 0..{codec.max_crf} for {codec.name}",
                            fix=f"the default is {codec.crf}; lower is better quality and a bigger file")
        preset = codec.preset if self.preset is None else str(self.preset)
        if preset not in codec.presets:
            raise ElsrError(f"unknown {codec.name} preset {preset!r}",
                            fix=f"use one of {', '.join(codec.presets)} (fastest first)")
        if self.threads < 0:
            raise ElsrError(f"encoder threads must be 0 (automatic) or more, got {self.threads}")
        return Encoding(container, codec, crf, preset, self.threads)


@dataclass(frozen=True)
class Encoding:
    """Resolved :class:`EncodeSettings`."""

    container: Container
    codec: VideoCodec
    crf: int
    preset: str
    threads: int

    def describe(self) -> str:
        return f"{self.codec.name} ({self.codec.encoder}) crf {self.crf} preset {self.preset}, {PIXEL_FORMAT}"


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float                          # average frame rate
    frames: int                         # the container's count, else estimated from the duration (0: unknown)
    time_base: Fraction                 # of the video stream's timestamps
    duration_s: float | None            # of the video stream, where the file says
    display_matrix: tuple[int, ...] | None = None   # rotation / flips, FFmpeg's 3x3 layout
    primaries: int = 2                  # colour tags of the source (2: unspecified), kept on the output
    transfer: int = 2


@dataclass
class Frame:
    """One RGB frame: its index in display order and, from a video, its timestamp and duration."""

    index: int
    rgb: np.ndarray
    pts: int | None = None
    duration: int = 0


def _problem(exc: BaseException) -> str:
    """FFmpeg's reason, without the library call it came from."""
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:200]


def _declared_duration(stream: av.video.stream.VideoStream) -> float | None:
    """The video stream's duration in seconds as the file gives it (Matroska: its DURATION tag)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = next((v for k, v in stream.metadata.items() if k.lower() == "duration"), None)
    match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)?)", tag or "")
    if match:
        hours, minutes, seconds = match.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None


class VideoReader:
    """An input video: its first video stream decoded to RGB frames; audio and subtitle packets as they come.

    Opening it decodes the first frame, so a file that cannot give one is refused before anything is written.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.container = av.open(ffmpeg_url(self.path))
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise ElsrError(f"cannot open video (corrupt or unsupported format: {_problem(exc)})", path=self.path,
                            fix=REENCODE_FIX) from exc
        try:
            if not self.container.streams.video:
                kinds = sorted({s.type for s in self.container.streams}) or ["no"]
                raise ElsrError(f"no video stream in this file ({' and '.join(kinds)} streams only)", path=self.path,
                                fix="give a file with a picture track, or a folder of frames")
            self.stream = self.container.streams.video[0]
            self.stream.codec_context.options = {"err_detect": "explode"}   # damage fails, never patched over
            self.copied = [s for s in self.container.streams if s.type in COPIED_KINDS]
            self.left_out = [s for s in self.container.streams if s is not self.stream and s not in self.copied]
            self._decoded = self._decode()
            self._head: list[av.VideoFrame | av.Packet] = []   # up to the first frame: packets before it, then it
            for item in self._decoded:
                self._head.append(item)
                if isinstance(item, av.VideoFrame):
                    break
            else:
                raise ElsrError("video has no readable frames (corrupt or unsupported codec)", path=self.path,
                                fix=REENCODE_FIX)
            self.info = self._info(self._head[-1])
        except av.FFmpegError as exc:
            self.close()
            raise ElsrError(f"cannot decode the first video frame: {_problem(exc)}", path=self.path,
                            fix=REENCODE_FIX) from exc
        except BaseException:
            self.close()
            raise

    def _info(self, first: av.VideoFrame) -> VideoInfo:
        stream = self.stream
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        if not MIN_FPS <= fps <= MAX_FPS:
            declared = f"a frame rate of {fps:g} fps, outside {MIN_FPS:g}..{MAX_FPS:g}" if fps else "no frame rate"
            raise ElsrError(f"the video declares {declared}: its timing is missing or broken", path=self.path,
                            fix=f"{REENCODE_FIX}, giving it a frame rate (ffmpeg -r)")
        duration = _declared_duration(stream)
        frames = stream.frames or (round(duration * fps) if duration else 0)
        matrix = first.side_data.get("DISPLAYMATRIX")
        display = tuple(int(v) for v in np.frombuffer(bytes(matrix), np.int32)) if matrix is not None else None
        return VideoInfo(first.width, first.height, fps, frames, stream.time_base or Fraction(1, round(fps)), duration,
                         display, first.color_primaries, first.color_trc)

    def _decode(self) -> Iterator[av.VideoFrame | av.Packet]:
        """Decoded video frames and the packets of copied streams, in file order."""
        wanted = [self.stream, *self.copied]
        for packet in self.container.demux(wanted):
            if packet.stream.type != "video":
                if packet.size and packet.dts is not None:   # not the empty packet that ends a stream
                    yield packet
                continue
            yield from packet.decode()

    def items(self, copy_streams: bool = True) -> Iterator[Frame | av.Packet]:
        """Every video frame as RGB (:class:`Frame`) and, with ``copy_streams``, the audio and subtitle packets
        between them, in file order; ElsrError if the stream breaks or ends early. Read once."""
        index, end, step, last = 0, None, 1 / self.info.fps, None
        decoded, self._head = itertools.chain(self._head, self._decoded), []
        try:
            for item in decoded:
                if isinstance(item, av.Packet):
                    if copy_streams:
                        yield item
                    continue
                frame = self._rgb(item, index)
                if frame.pts is not None:
                    self._check_advances(frame, last)
                    last = frame.pts
                    end = float((frame.pts + frame.duration) * self.info.time_base)
                    step = float(frame.duration * self.info.time_base) or step
                index += 1
                yield frame
        except av.FFmpegError as exc:
            raise ElsrError(f"video stream broken after frame {index}: {_problem(exc)}", path=self.path,
                            fix=REENCODE_FIX) from exc
        self._check_complete(index, end, step)

    def _check_advances(self, frame: Frame, last: int | None) -> None:
        """Frames in display order have rising timestamps; one that does not rise would be shown at once with its
        predecessor (or before it)."""
        if last is not None and frame.pts <= last:
            raise ElsrError(f"frame {frame.index}'s timestamp ({float(frame.pts * self.info.time_base):.3f} s) does "
                            f"not come after frame {frame.index - 1}'s: the video's timing is broken", path=self.path,
                            fix=f"{REENCODE_FIX}, giving it a frame rate (ffmpeg -r)")

    def _check_complete(self, frames: int, end: float | None, step: float) -> None:
        """The stream gave the frames and the duration its file declares, give or take TRUNCATION_FRAMES."""
        declared = self.info.duration_s
        if declared and end is not None and end < declared - TRUNCATION_FRAMES * step:
            raise ElsrError(f"video stream ends early: frames up to {end:.2f} s of the {declared:.2f} s the file "
                            "declares (truncated or damaged)", path=self.path, fix=REENCODE_FIX)
        counted = self.stream.frames   # the container's own count (MP4, MOV), not an estimate
        if counted and frames < counted - TRUNCATION_FRAMES:
            raise ElsrError(f"video stream ends early: {frames} of the {counted} frames the file declares "
                            "(truncated or damaged)", path=self.path, fix=REENCODE_FIX)

    def frames(self) -> Iterator[Frame]:
        """Every video frame as RGB, in display order."""
        return (item for item in self.items(copy_streams=False) if isinstance(item, Frame))

    def _rgb(self, decoded: av.VideoFrame, index: int) -> Frame:
        if (decoded.width, decoded.height) != (self.info.width, self.info.height):
            raise ElsrError(f"frame {index} is {decoded.width}x{decoded.height}, the first was "
                            f"{self.info.width}x{self.info.height}: the size changes mid-stream", path=self.path,
                            fix="re-encode it at one size")
        if decoded.is_corrupt:   # the decoder concealed damaged data rather than failing
            raise ElsrError(f"video stream broken after frame {index}: frame {index} is damaged (FFmpeg had to "
                            "patch over corrupt data)", path=self.path, fix=REENCODE_FIX)
        duration = decoded.duration or 0
        return Frame(index, decoded.to_ndarray(format="rgb24"), decoded.pts, duration)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def video_info(path: Path) -> VideoInfo:
    with VideoReader(path) as reader:
        return reader.info


def video_frames(path: Path, step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame) for every ``step``-th frame; a video with no readable frame is an error."""
    with VideoReader(path) as reader:
        for frame in reader.frames():
            if frame.index % step == 0:
                yield frame.index, frame.rgb


@dataclass
class OutputVideo:
    """What the written video is: its frame size and rate, the timestamps' unit, and what to keep from a source."""

    width: int
    height: int
    fps: float = DEFAULT_FPS
    time_base: Fraction | None = None           # None: 1/fps, one tick per frame
    source: VideoReader | None = None           # its audio/subtitle streams, metadata, rotation and colour tags


def to_yuv420p(rgb: np.ndarray, pts: int | None = None, duration: int = 0) -> av.VideoFrame:
    """An HxWx3 uint8 RGB image (even sides) as the yuv420p frame we encode: BT.601, limited range, the stream
    tagged so (OpenCV's SIMD conversion: 3-5x faster than swscale's, which matters beside a 720p encoder)."""
    frame = av.VideoFrame.from_numpy_buffer(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), format=PIXEL_FORMAT)
    frame.colorspace, frame.color_range = BT601, MPEG_RANGE
    frame.pts, frame.duration = pts, duration
    return frame


class VideoWriter:
    """An open output video: ``write`` encodes frames, ``mux`` copies a source packet. Use :func:`video_writer`."""

    def __init__(self, container: av.container.OutputContainer, encoding: Encoding, spec: OutputVideo,
                 path: Path) -> None:
        self.path, self.encoding, self.spec = path, encoding, spec
        self.output = container
        codec = encoding.codec
        rate = Fraction(spec.fps).limit_denominator(1001 * 1000)
        self.time_base = spec.time_base or 1 / rate
        try:
            options = codec.options(encoding.crf, encoding.preset)
            stream = container.add_stream(codec.encoder, rate=rate, options=options)
        except (av.FFmpegError, ValueError) as exc:
            raise ElsrError(f"FFmpeg cannot encode {codec.name} here: {_problem(exc)}", path=path,
                            fix="choose another --codec") from exc
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, PIXEL_FORMAT
        stream.time_base = stream.codec_context.time_base = self.time_base
        context = stream.codec_context
        context.colorspace, context.color_range = BT601, MPEG_RANGE
        if spec.source is not None:
            context.color_primaries, context.color_trc = spec.source.info.primaries, spec.source.info.transfer
        if encoding.threads:
            context.thread_count = encoding.threads
        self.stream = stream
        self.copies: dict[int, av.stream.Stream] = {}
        if spec.source is not None:
            self._copy_from(spec.source, path)
        self.frames = 0

    def _copy_from(self, source: VideoReader, path: Path) -> None:
        info = source.info
        if source.left_out:
            left = ", ".join(f"stream #{s.index} ({s.type})" for s in source.left_out)
            log.info("%s: not copied (only the first video stream is upscaled): %s", source.path, left)
        if info.display_matrix is not None:
            self.stream.set_display_matrix(info.display_matrix)
        _copy_metadata(source.container.metadata, self.output.metadata)
        _copy_metadata(source.stream.metadata, self.stream.metadata)
        for stream in source.copied:
            name = stream.codec_context.name if stream.codec_context else stream.codec.name
            try:
                copy = self.output.add_stream_from_template(stream)
            except (ValueError, av.FFmpegError) as exc:
                raise ElsrError(f"a {self.encoding.container.suffix} file cannot hold the input's {name} "
                                f"{stream.type} stream (#{stream.index}), which is copied unchanged", path=path,
                                fix="write .mkv, which holds most codecs") from exc
            _copy_metadata(stream.metadata, copy.metadata)
            copy.disposition = stream.disposition
            self.copies[stream.index] = copy

    def write(self, frame: av.VideoFrame) -> None:
        """Encode one frame (from :func:`to_yuv420p`); without a timestamp it gets the next frame's slot."""
        if frame.pts is None:
            frame.pts = round(self.frames / self.spec.fps / self.time_base)
            frame.duration = round(1 / self.spec.fps / self.time_base)
        frame.time_base = self.time_base
        self._mux(self.stream.encode(frame))
        self.frames += 1

    def mux(self, packet: av.Packet) -> None:
        """Copy a packet of a source stream, unchanged."""
        copy = self.copies.get(packet.stream.index)
        if copy is not None:
            packet.stream = copy
            self._mux(packet)

    def _mux(self, packets) -> None:
        try:
            self.output.mux(packets)
        except av.FFmpegError as exc:
            raise ElsrError(f"cannot write the video: {_problem(exc)}", path=self.path,
                            fix="check free disk space; with copied streams, try .mkv") from exc

    def finish(self) -> None:
        self._mux(self.stream.encode(None))


def _copy_metadata(source: dict, target: dict) -> None:
    target.update({k: v for k, v in source.items() if k.lower() not in DROPPED_METADATA})


@contextlib.contextmanager
def video_writer(path: Path, spec: OutputVideo, settings: EncodeSettings = EncodeSettings()) -> Iterator[VideoWriter]:
    """An open :class:`VideoWriter`; the file appears at ``path`` only when the block ends without an error."""
    encoding = settings.resolve(path)
    if spec.width % 2 or spec.height % 2:
        raise ElsrError(f"the output frame is {spec.width}x{spec.height}: {PIXEL_FORMAT} needs even sides",
                        path=path, fix="crop the input to an even size")
    with atomic_path(path) as tmp:
        with av.open(ffmpeg_url(tmp), "w", format=encoding.container.format) as container:
            writer = VideoWriter(container, encoding, spec, path)
            yield writer
            writer.finish()

