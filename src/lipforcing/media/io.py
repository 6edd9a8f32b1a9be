"""Video and audio I/O on PyAV: decode any common container, encode H.264 + AAC mp4.

Design choices:
- Frames are RGB ``uint8`` ``(T, H, W, 3)`` with per-frame presentation timestamps in seconds
  (first frame at 0). Audio is mono ``float32`` (the mean of the channels) resampled to 16 kHz
  by FFmpeg's resampler.
- Conforming to a target rate is done on timestamps, not frame counts, so variable-frame-rate
  input stays in sync: output frame k shows the source frame on screen at time k / fps
  (sample and hold), and the output covers the source's duration.
- Audio is taken from the audio stream's own start; a stream that starts after the video is
  front-padded with silence so sample 0 lines up with frame 0.
- ``write_video`` encodes H.264 (``yuv420p``) at the exact frame size. 4:2:0 chroma needs even
  sides, so a frame with an odd width or height is encoded as ``yuv444p`` instead (High 4:4:4
  profile) rather than padded or resized: every decoder we use reads it, some hardware players
  do not.
- Every failure to open or decode becomes a one-line :class:`MediaError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from lipforcing.errors import MediaError, UserError
from lipforcing.media.probe import MediaBudget, VideoKind, open_video

SAMPLE_RATE = 16_000


@dataclass
class VideoClip:
    """A decoded video: frames, their timestamps and the (optional) soundtrack."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    fps: float  # nominal frame rate (the target rate once conformed)
    timestamps: np.ndarray  # (T,) float64 seconds, first frame at 0
    audio: np.ndarray | None  # (N,) float32 mono, or None without a usable audio stream
    sample_rate: int = SAMPLE_RATE  # Hz of ``audio``
    source_index: np.ndarray | None = None  # (T,) decoded frame shown by each frame (conform)

    @property
    def duration(self) -> float:
        return len(self.frames) / self.fps


def _open(path: str | Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"no such file: {path}")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise MediaError(f"cannot open {path.name}: not a readable media file ({e})") from None


def read_video(
    path: str | Path,
    fps: float | None = None,
    *,
    max_frames: int | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> VideoClip:
    """Decode a video file into RGB frames, timestamps and 16 kHz mono audio.

    Args:
        path: any container/codec FFmpeg reads (mp4, mov, mkv, webm; H.264, HEVC, VP9, ...).
        fps: conform the frames to this rate by timestamps; None keeps the decoded frames.
        max_frames: stop after this many decoded source frames.
        sample_rate: rate of the returned audio.

    Returns:
        :class:`VideoClip`; ``audio`` is None when there is no audio stream or it is empty.
    """
    frames, stamps, native_fps = [], [], 25.0
    for frame, stamp, rate in _decode_video(path, max_frames):
        frames.append(frame)
        stamps.append(stamp)
        native_fps = rate
    timestamps = _fix_timestamps(np.asarray(stamps, np.float64), native_fps)
    video_start = stamps[0] if np.isfinite(stamps[0]) else 0.0
    audio = _read_audio_stream(path, sample_rate, video_start)
    clip = VideoClip(np.stack(frames), native_fps, timestamps, audio, sample_rate)
    return conform(clip, fps) if fps is not None else clip


def _decode_video(path: str | Path, max_frames: int | None, untrusted: Untrusted | None = None):
    """Yield (RGB frame, timestamp or NaN, nominal fps) of the first video stream.

    With ``untrusted``, the container is opened with its demuxer forced, decoded on one thread,
    and every frame's size and timestamp is checked against the budget BEFORE it is converted.
    """
    name = untrusted.name if untrusted else Path(path).name
    container = open_video(path, untrusted.kind, name) if untrusted else _open(path)
    with container:
        if not container.streams.video:
            raise MediaError(f"{name}: no video stream")
        stream = container.streams.video[0]
        if untrusted is None:
            stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        native_fps = float(rate) if rate else 25.0
        count, first = 0, None
        try:
            for frame in container.decode(stream):
                stamp = frame.time if frame.time is not None else np.nan
                if untrusted is not None:
                    first = stamp if first is None else first
                    untrusted.check(frame, stamp - first, count, native_fps)
                yield frame.to_ndarray(format="rgb24"), stamp, native_fps
                count += 1
                if max_frames is not None and count >= max_frames:
                    break
        except av.error.FFmpegError as e:
            if not count:
                raise MediaError(f"{name}: cannot decode video ({e.strerror or e})") from None
        if not count:
            raise MediaError(f"{name}: the video stream has no frames")


@dataclass(frozen=True)
class Untrusted:
    """How to decode a file nobody vouches for (an upload): its sniffed kind and its budget."""

    kind: VideoKind  # from media.probe.sniff, never from the name
    budget: MediaBudget
    name: str  # the name to report (the user's, not the server's temporary path)

    def check(self, frame, seconds: float, count: int, fps: float) -> None:
        """Refuse a decoded frame over the budget before its pixels are converted."""
        self.budget.check_size(frame.width, frame.height, self.name)
        if np.isfinite(seconds):
            self.budget.check_seconds(seconds, fps, self.name)
        if count >= self.budget.max_frames:
            raise MediaError(f"{self.name}: more than {self.budget.max_frames} frames")


def iter_frames(
    path: str | Path,
    fps: float | None = None,
    *,
    max_frames: int | None = None,
    untrusted: Untrusted | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Stream ``(source_index, frame)`` pairs: the frames of ``read_video(path, fps)``.

    Holds one decoded frame at a time, so clips of any length fit in memory; conforming is
    the same timestamp sample-and-hold as :func:`conform`. With ``untrusted`` (an upload) the
    budget is also checked on the conformed duration before the last frame is held.
    """
    if fps is not None and fps <= 0:
        raise UserError(f"fps must be positive, got {fps}")
    stamps: list[float] = []  # seconds since the first frame, made non-decreasing
    previous, k, first, native_fps = None, 0, 0.0, 25.0
    frames = _decode_video(path, max_frames, untrusted)
    for i, (frame, stamp, rate) in enumerate(frames):
        if fps is None:
            yield i, frame
            continue
        native_fps = rate
        stamp = stamp if np.isfinite(stamp) else i / native_fps
        first = stamp if i == 0 else first
        stamps.append(max(stamp - first, stamps[-1] if stamps else 0.0))
        while previous is not None and k / fps + 1e-6 < stamps[-1]:
            yield previous
            k += 1
        previous = (i, frame)
    if fps is None or previous is None:
        return
    step = np.median(np.diff(stamps)) if len(stamps) > 1 else 1.0 / native_fps
    if untrusted is not None:  # the last frame is held for one typical interval
        untrusted.budget.check_seconds(stamps[-1] + step, fps, untrusted.name)
    count = max(1, int(round((stamps[-1] + step) * fps)))
    for _ in range(k, count):
        yield previous


def read_soundtrack(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """The audio of a video file aligned to its first video frame (None: no audio)."""
    first = next(_decode_video(path, 1))[1]
    return _read_audio_stream(path, sample_rate, first if np.isfinite(first) else 0.0)


def _fix_timestamps(stamps: np.ndarray, fps: float) -> np.ndarray:
    """Start at 0; fill missing stamps and force them increasing (broken files)."""
    if not np.isfinite(stamps).all():
        stamps = np.arange(len(stamps)) / fps
    stamps = stamps - stamps[0]
    return np.maximum.accumulate(stamps)


def conform(clip: VideoClip, fps: float) -> VideoClip:
    """Resample frames to a constant ``fps`` by timestamps (VFR-safe sample and hold)."""
    if fps <= 0:
        raise UserError(f"fps must be positive, got {fps}")
    ts = clip.timestamps
    step = np.median(np.diff(ts)) if len(ts) > 1 else 1.0 / clip.fps
    duration = ts[-1] + step  # the last frame stays on screen for one typical interval
    count = max(1, int(round(duration * fps)))
    target = np.arange(count) / fps
    idx = np.searchsorted(ts, target + 1e-6, side="right") - 1
    idx = np.clip(idx, 0, len(ts) - 1)
    if clip.source_index is not None:
        idx_src = clip.source_index[idx]
    else:
        idx_src = idx
    return VideoClip(clip.frames[idx], float(fps), target, clip.audio, clip.sample_rate, idx_src)


def _read_audio_stream(path: str | Path, sample_rate: int, video_start: float) -> np.ndarray | None:
    with _open(path) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        audio = _decode_audio(container, stream, sample_rate, Path(path).name)
        start = stream.start_time * stream.time_base if stream.start_time is not None else 0
    if audio is None:
        return None
    offset = int(round((float(start) - video_start) * sample_rate))
    if offset > 0:
        audio = np.concatenate([np.zeros(offset, np.float32), audio])
    elif offset < 0:
        audio = audio[-offset:]
    return audio if len(audio) else None


def _decode_audio(container, stream, sample_rate: int, name: str) -> np.ndarray | None:
    # Resample with FFmpeg but downmix ourselves: channels are averaged (FFmpeg's stereo ->
    # mono matrix adds them at -3 dB, which raises the level of correlated channels).
    resampler = av.AudioResampler(format="fltp", rate=sample_rate)
    chunks = []
    try:
        for frame in container.decode(stream):
            frame.pts = None  # resample by sample count; gaps in pts are not ours to fill
            chunks.extend(f.to_ndarray().mean(0) for f in resampler.resample(frame))
    except av.error.FFmpegError as e:
        if not chunks:
            raise MediaError(f"{name}: cannot decode audio ({e})") from None
    chunks.extend(f.to_ndarray().mean(0) for f in resampler.resample(None))
    if not chunks:
        return None
    audio = np.concatenate(chunks).astype(np.float32)
    return audio if len(audio) else None


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of any file (wav, mp3, flac, m4a, mp4...) to mono float32.

    Raises:
        MediaError: missing file, no audio stream, or no samples.
    """
    name = Path(path).name
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{name}: no audio stream")
        audio = _decode_audio(container, container.streams.audio[0], sample_rate, name)
    if audio is None:
        raise MediaError(f"{name}: the audio stream is empty")
    return audio


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    *,
    crf: int = 18,
) -> None:
    """Encode RGB frames as H.264 mp4 at their exact size, with AAC audio when given.

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        fps: frame rate (29.97 is stored as 30000/1001).
        audio: (N,) float32 mono in [-1, 1] at ``sample_rate``, or None.
        crf: x264 constant rate factor (18: visually lossless).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise UserError(f"write_video: expected (T, H, W, 3) uint8 frames, got {frames.shape}")
    if fps <= 0:
        raise UserError(f"write_video: fps must be positive, got {fps}")
    t, h, w, _ = frames.shape
    pix_fmt = "yuv420p" if h % 2 == 0 and w % 2 == 0 else "yuv444p"
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=_rate(fps))
        video.width, video.height, video.pix_fmt = w, h, pix_fmt
        video.options = {"crf": str(crf), "preset": "medium"}
        sound = None
        if audio is not None and len(audio):
            sound = container.add_stream("aac", rate=sample_rate, layout="mono")
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            _encode_audio(container, sound, np.asarray(audio, np.float32), sample_rate)


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int) -> None:
    block = 1024  # AAC frame size
    audio = np.clip(audio.reshape(-1), -1.0, 1.0)
    for start in range(0, len(audio), block):
        chunk = np.ascontiguousarray(audio[None, start : start + block])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = sample_rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


__all__ = [
    "Untrusted",
    "VideoClip",
    "conform",
    "iter_frames",
    "read_audio",
    "read_soundtrack",
    "read_video",
    "write_video",
]
