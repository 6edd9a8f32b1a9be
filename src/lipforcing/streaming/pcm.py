"""PCM input for streams: decode pushes of any size and format into 16 kHz float32 mono.

Accepted: ``bytes``/``bytearray``/``memoryview`` of little-endian int16 samples, numpy int16
arrays (scaled by 1/32768) and float arrays in [-1, 1]; stereo ``(N, 2)`` arrays are averaged.
Other sample rates go through one stateful ``soxr`` stream resampler per stream, so a stream
cut into arbitrary pushes resamples the same as one long push (up to the resampler's delay,
which ``flush`` releases at the end of a segment).
"""

from __future__ import annotations

import numpy as np

from lipforcing.errors import UserError

MAX_RATE = 192_000


def to_float32(pcm) -> np.ndarray:
    """Decode one push into float32 mono samples (no resampling)."""
    if isinstance(pcm, bytes | bytearray | memoryview):
        raw = bytes(pcm)
        if len(raw) % 2:
            raise UserError(f"int16 PCM must have an even number of bytes, got {len(raw)}")
        return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    a = np.asarray(pcm)
    if a.ndim == 2:
        a = a.mean(axis=1) if a.shape[1] <= 8 else a.mean(axis=0)
    if a.ndim != 1:
        raise UserError(f"audio must be mono samples (N,) or (N, channels), got {a.shape}")
    if a.dtype == np.int16:
        return a.astype(np.float32) / 32768.0
    if not np.issubdtype(a.dtype, np.floating):
        raise UserError(f"audio samples must be int16 or float, got {a.dtype}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise UserError("audio contains NaN or infinite samples")
    return np.clip(a, -1.0, 1.0)


class Resampler:
    """Stateful conversion of pushes at ``rate`` Hz to ``target`` Hz."""

    def __init__(self, target: int = 16_000) -> None:
        self.target = target
        self.rate: int | None = None
        self._stream = None

    def __call__(self, samples: np.ndarray, rate: int) -> np.ndarray:
        if not 1_000 <= rate <= MAX_RATE:
            raise UserError(f"unsupported sample rate {rate} Hz (1 kHz .. {MAX_RATE // 1000} kHz)")
        if rate != self.rate:
            tail = self.flush()
            self.rate, self._stream = rate, None
            if rate != self.target:
                import soxr

                self._stream = soxr.ResampleStream(rate, self.target, 1, dtype="float32")
            if len(tail):
                return np.concatenate([tail, self(samples, rate)])
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=False).astype(np.float32)

    def flush(self) -> np.ndarray:
        """Release the samples the resampler still holds (end of a segment)."""
        if self._stream is None:
            return np.zeros(0, np.float32)
        out = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        self._stream = None
        self.rate = None
        return out.astype(np.float32)
