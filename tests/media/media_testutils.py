"""Media test helpers: synthetic clips written with PyAV directly (independent of media.io)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CLIPS = ["hdtf_WDA_KatieHill_000", "retalking_face_2", "vexpress_AOC_gt"]  # fast real-clip tests


def pattern_frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth moving colour gradients with a per-frame marker: compress well, differ per frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        for c in range(3):
            wave = np.sin(xx / (17 + 5 * c) + yy / 23 + phase[c] + 0.3 * i)
            out[i, :, :, c] = (127 + 100 * wave).astype(np.uint8)
    return out


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    """(channels, N) float32 sine."""
    n = int(round(seconds * rate))
    x = 0.3 * np.sin(2 * np.pi * freq * np.arange(n) / rate).astype(np.float32)
    return np.repeat(x[None], channels, 0)


def write_test_clip(
    path: Path,
    frames: np.ndarray | None,
    fps: float = 25.0,
    *,
    audio: np.ndarray | None = None,
    sample_rate: int = 16_000,
    codec: str = "libx264",
    times: np.ndarray | None = None,
) -> Path:
    """Write frames (with optional per-frame times in seconds: VFR) and/or (C, N) audio."""
    with av.open(str(path), "w") as out:
        video = sound = None
        if frames is not None:
            rate = Fraction(fps).limit_denominator(1001)
            video = out.add_stream(codec, rate=rate)
            video.height, video.width = frames.shape[1:3]
            video.pix_fmt = "yuv420p"
            if times is not None:
                video.time_base = Fraction(1, 1000)
        if audio is not None:
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            name = "aac" if path.suffix in {".mp4", ".m4a", ".mov"} else "pcm_s16le"
            sound = out.add_stream(name, rate=sample_rate, layout=layout)
        if video is not None:
            for i, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                if times is not None:
                    frame.pts, frame.time_base = int(round(times[i] * 1000)), Fraction(1, 1000)
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
        if sound is not None:
            fmt = "fltp" if sound.codec_context.name == "aac" else "s16"
            for start in range(0, audio.shape[1], 1024):
                chunk = audio[:, start : start + 1024]
                if fmt == "s16":
                    data = (chunk.T.reshape(1, -1) * 32767).astype(np.int16)
                else:
                    data = np.ascontiguousarray(chunk)
                frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=sound.layout.name)
                frame.sample_rate, frame.pts = sample_rate, start
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
