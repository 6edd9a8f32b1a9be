"""Check the media files a command is given before any heavy work: headers and one frame.

Commands call :func:`check_source` / :func:`check_speech` first, so that a 0-byte wav, a video
without sound, an unreadable file, an odd sample rate or frame rate, or a source too long or
too large for memory ends in one clear :class:`MediaError` before a model is loaded or a face
is tracked (which take seconds to minutes). These are files the user names on the command
line; uploads nobody vouches for go through :mod:`lipforcing.media.probe` instead.

Design choices:
- PyAV reads the container header (streams, rates, sizes, durations) and decodes the FIRST
  frame of the stream that matters, nothing more: a file that opens but cannot decode fails
  here, not after the model load.
- A source's length is the video stream's own duration (the audio stream may run a little
  longer); a video of exactly ``max_seconds`` is accepted, the limit is "longer than".
  Durations the header does not give are left to the decoder's cap.
- Memory: the whole source is held decoded (T x H x W x 3 bytes, at the file's rate and again
  conformed to the media rate). Its size is estimated from the header and refused when above
  ``MEMORY_SHARE`` of the machine's physical memory, with the figure and what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av

from lipforcing.errors import MediaError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
MAX_SOURCE_SECONDS = 600.0  # longest source video a command accepts
SAMPLE_RATES = (4_000, 384_000)  # Hz accepted for speech (resampled to 16 kHz)
FRAME_RATES = (1.0, 240.0)  # fps a declared video rate must lie in
MAX_IMAGE_PIXELS = 8192 * 8192  # a still image larger than this is refused
MEMORY_SHARE = 0.5  # decoded source frames may use up to this share of physical memory


@dataclass(frozen=True)
class MediaInfo:
    """What the header of a media file says (None: the header does not say)."""

    name: str
    kind: str  # "image" | "video" | "audio"
    duration_s: float | None = None  # of the video stream (video), audio stream (audio)
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    has_audio: bool = False
    sample_rate: int | None = None
    channels: int | None = None


def check_source(
    path: str | Path, max_seconds: float = MAX_SOURCE_SECONDS, *, need_audio: bool = False
) -> MediaInfo:
    """A source video or still image: readable, a sane frame rate, not longer than
    ``max_seconds``, small enough to hold decoded; with ``need_audio``, a usable soundtrack."""
    path = _existing(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        info = _probe_image(path)
    else:
        info = _probe_video(path, max_seconds)
    if need_audio:
        if not info.has_audio:
            raise MediaError(f"{path.name} has no audio track; give the speech with --audio FILE")
        _check_audio_stream(path)
    return info


def check_speech(path: str | Path) -> MediaInfo:
    """Driving speech: any file with a decodable audio stream at a sane sample rate."""
    path = _existing(path)
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path.name}: no audio stream (is it the video? give a speech file)")
        stream = container.streams.audio[0]
        duration = _seconds(stream.duration, stream.time_base)
    info = _check_audio_stream(path)
    return MediaInfo(
        path.name,
        "audio",
        duration_s=duration,
        has_audio=True,
        sample_rate=info.sample_rate,
        channels=info.channels,
    )


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise MediaError(f"{path.name} is empty (0 bytes)")
    return path


def _open(path: Path):
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise MediaError(f"cannot open {path.name}: not a readable media file ({e})") from None


def _seconds(duration, time_base) -> float | None:
    return float(duration * time_base) if duration is not None and time_base else None


def _probe_video(path: Path, max_seconds: float) -> MediaInfo:
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path.name}: no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.base_rate
        fps = float(rate) if rate else None
        duration = _seconds(stream.duration, stream.time_base)
        if duration is None and container.duration is not None:
            duration = container.duration / av.time_base
        width, height = stream.codec_context.width, stream.codec_context.height
        has_audio = bool(container.streams.audio)
        _first_frame(container, stream, path.name, "video")
    if fps is not None and not FRAME_RATES[0] <= fps <= FRAME_RATES[1]:
        raise MediaError(
            f"{path.name}: frame rate {fps:g} fps is outside {FRAME_RATES[0]:g}-"
            f"{FRAME_RATES[1]:g} fps (a damaged header?); re-encode it at a normal rate"
        )
    if duration is not None and duration > max_seconds + 0.5 / (fps or FRAME_RATES[1]):
        raise MediaError(
            f"{path.name}: {duration:.1f} s is longer than {max_seconds:.0f} s; trim the source"
        )
    _check_memory(path.name, duration, fps, width, height)
    return MediaInfo(path.name, "video", duration, fps, width, height, has_audio)


def _probe_image(path: Path) -> MediaInfo:
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(f"cannot read image {path.name}")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width and height and width * height > MAX_IMAGE_PIXELS:
            raise MediaError(
                f"{path.name}: {width}x{height} pixels is more than a source image may have "
                f"({MAX_IMAGE_PIXELS // 1_000_000} megapixels); downscale it"
            )
        _first_frame(container, stream, path.name, "image")
    return MediaInfo(path.name, "image", None, None, width, height)


def _first_frame(container, stream, name: str, what: str) -> None:
    try:
        for _ in container.decode(stream):
            return
    except (av.error.FFmpegError, ValueError) as e:
        raise MediaError(f"{name}: cannot decode the {what} ({e})") from None
    raise MediaError(f"{name}: the {what} stream has no frames")


def _check_audio_stream(path: Path) -> MediaInfo:
    """The first audio stream decodes to samples at an accepted rate."""
    with _open(path) as container:
        stream = container.streams.audio[0]
        rate = stream.rate or stream.codec_context.sample_rate
        channels = stream.codec_context.channels
        if not rate or not SAMPLE_RATES[0] <= rate <= SAMPLE_RATES[1]:
            raise MediaError(
                f"{path.name}: audio sample rate {rate} Hz is outside {SAMPLE_RATES[0]}-"
                f"{SAMPLE_RATES[1]} Hz; re-encode the speech (16 kHz or more)"
            )
        try:
            for frame in container.decode(stream):
                if frame.samples:
                    return MediaInfo(path.name, "audio", sample_rate=rate, channels=channels)
        except (av.error.FFmpegError, ValueError) as e:
            raise MediaError(f"{path.name}: cannot decode the audio ({e})") from None
    raise MediaError(f"{path.name}: the audio has no samples")


def _check_memory(name: str, duration, fps, width, height) -> None:
    """Refuse a source whose decoded frames would not fit beside everything else."""
    if not (duration and width and height):
        return
    from lipforcing.config import MediaConfig

    rate = MediaConfig().fps
    frames = duration * ((fps or rate) + rate)  # decoded at the file's rate, then conformed
    need = frames * width * height * 3
    total = _physical_memory()
    if total and need > MEMORY_SHARE * total:
        raise MediaError(
            f"{name}: {duration:.0f} s of {width}x{height} video needs about "
            f"{need / 2**30:.1f} GiB decoded, more than {MEMORY_SHARE:.0%} of this machine's "
            f"{total / 2**30:.0f} GiB; trim or downscale the source"
        )


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


__all__ = ["MAX_SOURCE_SECONDS", "MediaInfo", "check_source", "check_speech"]
