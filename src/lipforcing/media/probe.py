"""Untrusted media: what a file is (from its bytes), and whether it fits a budget, before decoding.

An uploaded file is judged by its content, never by its name: :func:`sniff` reads the first
bytes and recognises the containers the page offers (ISO-BMFF mp4 / mov, Matroska mkv / webm)
and the still-image formats (PNG, JPEG, WebP, BMP). Anything else, text playlists included, is
refused, so FFmpeg's playlist, concat and protocol demuxers are never reached: a video is then
opened with its demuxer forced (:data:`DEMUXERS`) and only the ``file`` protocol allowed.

Budgets (:class:`MediaBudget`) are checked twice, both times before any frame is decoded into
memory or resampled: first from what the container declares (:func:`probe_video`: frame size,
duration, frame count; :func:`probe_image`: the image header), then per frame while decoding
(:func:`lipforcing.media.io.iter_frames` with ``budget=``): the decoded frame's size and its
timestamp, because a header can lie (a 2 KB mkv with frames 100,000 s apart declares nothing
unusual).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lipforcing.errors import MediaError

VideoKind = Literal["mp4", "mkv"]
ImageKind = Literal["png", "jpeg", "webp", "bmp"]
MediaKind = Literal["mp4", "mkv", "png", "jpeg", "webp", "bmp"]
IMAGE_KINDS = ("png", "jpeg", "webp", "bmp")
# The FFmpeg demuxer each video kind is opened with (mov reads mp4 and QuickTime; matroska
# reads mkv and webm). Nothing else is ever probed.
DEMUXERS: dict[str, str] = {"mp4": "mov", "mkv": "matroska"}
# Top-level ISO-BMFF / QuickTime boxes a movie file can start with (bytes 4..8).
ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
EBML_MAGIC = b"\x1a\x45\xdf\xa3"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SNIFF_BYTES = 16
ALLOWED_TEXT = "an mp4, mov, mkv or webm video, or a PNG, JPEG, WebP or BMP image"
TIMESTAMP_SLACK_FRAMES = 0.5  # frames of tolerance on the duration budget (a 600 s clip fits 600)


@dataclass(frozen=True, kw_only=True)
class MediaBudget:
    """What one untrusted file may cost once decoded."""

    max_seconds: float = 600.0  # longest video, seconds of presentation time
    max_pixels: int = 3840 * 2160  # largest frame, width * height pixels
    max_fps: float = 120.0  # highest frame rate; with max_seconds it bounds the frame count

    def __post_init__(self) -> None:
        if self.max_seconds <= 0 or self.max_pixels <= 0 or self.max_fps <= 0:
            raise ValueError("media budgets must be positive")

    @property
    def max_frames(self) -> int:
        """Decoded frames at most (max_seconds at max_fps)."""
        return int(self.max_seconds * self.max_fps) + 1

    def check_size(self, width: int, height: int, name: str) -> None:
        if width <= 0 or height <= 0:
            raise MediaError(f"{name}: the file declares no frame size")
        if width * height > self.max_pixels:
            raise MediaError(
                f"{name}: {width}x{height} frames are over the limit of "
                f"{self.max_pixels / 1e6:.1f} megapixels; scale the source down"
            )

    def check_seconds(self, seconds: float, fps: float, name: str) -> None:
        """Refuse presentation times past ``max_seconds`` (half a frame of slack)."""
        if seconds > self.max_seconds + TIMESTAMP_SLACK_FRAMES / fps:
            raise MediaError(f"{name}: longer than {self.max_seconds:g} s; trim the source")


@dataclass(frozen=True)
class VideoInfo:
    """What a video container declares about its first video stream."""

    width: int
    height: int
    fps: float  # nominal frame rate (25 when the container gives none)
    seconds: float | None  # declared duration, None when unknown
    frames: int | None  # declared frame count, None when unknown


def sniff(path: str | Path, name: str | None = None) -> MediaKind:
    """The kind of a file from its first bytes; MediaError when it is none we accept."""
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    kind = _kind(head)
    if kind is None:
        raise MediaError(f"{name or Path(path).name}: not a supported file; send {ALLOWED_TEXT}")
    return kind


def _kind(head: bytes) -> MediaKind | None:
    if head[4:8] in ISO_BOXES:
        return "mp4"
    if head.startswith(EBML_MAGIC):
        return "mkv"
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM"):
        return "bmp"
    return None


def open_video(path: str | Path, kind: VideoKind, name: str | None = None):
    """Open a video with its demuxer forced and only local file reads allowed."""
    import av

    name = name or Path(path).name
    demuxer = DEMUXERS[kind]
    options = {"protocol_whitelist": "file", "format_whitelist": demuxer}
    try:
        return av.open(str(path), format=demuxer, options=options)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise MediaError(f"{name}: not a readable {kind} file ({_reason(e)})") from None


def probe_video(path: str | Path, kind: VideoKind, budget: MediaBudget, name: str) -> VideoInfo:
    """Read the container's headers and check them against ``budget`` (nothing decoded)."""
    with open_video(path, kind, name) as container:
        if not container.streams.video:
            raise MediaError(f"{name}: no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 25.0
        seconds = _declared_seconds(container, stream)
        info = VideoInfo(ctx.width, ctx.height, fps, seconds, stream.frames or None)
    budget.check_size(info.width, info.height, name)
    if info.seconds is not None:
        budget.check_seconds(info.seconds, info.fps, name)
    if info.frames is not None and info.frames > budget.max_frames:
        raise MediaError(f"{name}: {info.frames} frames are over the limit of {budget.max_frames}")
    if fps > budget.max_fps:
        raise MediaError(f"{name}: {fps:g} fps is over the limit of {budget.max_fps:g}")
    return info


def _declared_seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def probe_image(path: str | Path, kind: ImageKind, budget: MediaBudget, name: str):
    """Open a still image lazily (header only), check its size; returns the PIL image."""
    from PIL import Image, UnidentifiedImageError

    formats = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "bmp": "BMP"}
    try:
        image = Image.open(path, formats=[formats[kind]])
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise MediaError(f"{name}: not a readable {kind} image ({_reason(e)})") from None
    budget.check_size(*image.size, name)
    return image


def read_image(path: str | Path, kind: ImageKind, budget: MediaBudget, name: str):
    """Decode a still image checked against ``budget``: (1, H, W, 3) uint8 RGB."""
    import numpy as np
    from PIL import Image

    image = probe_image(path, kind, budget, name)
    try:
        with image:
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise MediaError(f"{name}: cannot decode the image ({_reason(e)})") from None
    return np.ascontiguousarray(rgb[None])


def _reason(e: BaseException) -> str:
    """The library's own words, without file paths (the server's layout is nobody's business)."""
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return re.sub(r"'?/[^\s']*'?", "<file>", text)[:200]
