"""Hostile and edge-case media for the upload tests and the load test (issue 19's probes).

Everything is generated here, small in bytes: an HLS playlist and an FFmpeg concat script that
name a local file, a PNG whose header declares a huge image, Matroska files whose frame
timestamps are far apart, and a video of an exact duration.
"""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np


def hls_playlist(target: Path) -> bytes:
    """An HLS playlist whose one segment is ``target`` on the server's disk."""
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:10.0,\nfile://{target}\n#EXT-X-ENDLIST\n"
    ).encode()


def concat_script(target: Path) -> bytes:
    """An FFmpeg concat demuxer script naming ``target``."""
    return f"ffconcat version 1.0\nfile '{target}'\n".encode()


def png_bomb(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG of ``width`` x ``height`` black pixels: a few KB that decode to
    ``3 * width * height`` bytes of RGB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def timed_mkv(path: Path, frames: np.ndarray, seconds: list[float], codec: str = "libx264") -> Path:
    """A Matroska video whose frame ``k`` is shown at ``seconds[k]`` (any gaps)."""
    import av

    t, h, w, _ = frames.shape
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        for image, s in zip(frames, seconds):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = round(s * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def container_video(path: Path, frames: np.ndarray, fps: float, fmt: str) -> Path:
    """``frames`` as an mkv (H.264) or webm (VP9) file at ``fps``."""
    import av

    codec = "libvpx-vp9" if fmt == "webm" else "libx264"
    _, h, w, _ = frames.shape
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def face_clip(seconds: float = 1.0, size: int = 192, seed: int = 910_001) -> np.ndarray:
    """(T, size, size, 3) uint8 SynthTalk frames at 25 fps (dlib finds these faces)."""
    from lipforcing.media.synthtalk import render_clip

    return np.asarray(render_clip(seed, seconds, size=size, fps=25).frames)
