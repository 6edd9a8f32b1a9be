"""PCM input for streams: decode pushes of any size and format into 16 kHz float32 mono.

Accepted: ``bytes``/``bytearray``/``memoryview`` of little-endian int16 samples, numpy int16
arrays (scaled by 1/32768) and float arrays in [-1, 1]; multichannel ``(N, C)`` (or ``(C, N)``)
arrays are averaged to mono after scaling, so int16 stereo keeps its level. Floats beyond
[-1, 1] are clipped (valid input is never touched). Other sample rates go through one stateful
``soxr`` stream resampler per stream, so a stream cut into arbitrary pushes resamples the same
as one long push (up to the resampler's delay, which ``flush`` releases at the end of a segment).

:func:`interleaved` reads the int16 interleaved buffers voice-agent frameworks pass around, and
:class:`FormatConverter` brings int16 audio of one format into another (a sink that was
announced one rate and channel count), with the same streaming resampler.
"""

from __future__ import annotations

import numpy as np

from lipforcing.errors import UserError

MAX_RATE = 192_000
MIN_RATE = 1_000
MAX_CHANNELS = 8
INT16_SCALE = 32768.0  # int16 full scale: -32768 .. 32767 maps to -1 .. 1 - 2**-15


def to_float32(pcm) -> np.ndarray:
    """Decode one push into float32 mono samples (no resampling)."""
    if isinstance(pcm, bytes | bytearray | memoryview):
        return _scaled(interleaved(pcm, 1)[:, 0])
    a = np.asarray(pcm)
    if a.ndim not in (1, 2):
        raise UserError(f"audio must be mono samples (N,) or (N, channels), got {a.shape}")
    return _to_mono(_scaled(a))


def interleaved(data: bytes | bytearray | memoryview, channels: int) -> np.ndarray:
    """Little-endian int16 interleaved bytes -> (N, channels) int16 (a view, no copy)."""
    raw = memoryview(data).cast("B")
    if not 1 <= channels <= MAX_CHANNELS:
        raise UserError(f"unsupported channel count {channels} (1 .. {MAX_CHANNELS})")
    if len(raw) % (2 * channels):
        whole = "an even number" if channels == 1 else f"a multiple of {2 * channels}"
        raise UserError(f"int16 PCM ({channels} ch) must have {whole} of bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype="<i2").reshape(-1, channels)


def _scaled(a: np.ndarray) -> np.ndarray:
    """int16 -> float32 / 32768; floats checked and clipped to [-1, 1]; anything else refused."""
    if a.dtype == np.int16:
        return a.astype(np.float32) / INT16_SCALE
    if not np.issubdtype(a.dtype, np.floating):
        raise UserError(f"audio samples must be int16 or float, got {a.dtype}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise UserError("audio contains NaN or infinite samples")
    return np.clip(a, -1.0, 1.0)


def _to_mono(a: np.ndarray) -> np.ndarray:
    """(N,) as is; (N, C) or (C, N) with C <= MAX_CHANNELS averaged over the channels."""
    if a.ndim == 1:
        return a
    if a.shape[1] <= MAX_CHANNELS:
        return a.mean(axis=1, dtype=np.float32)
    if a.shape[0] <= MAX_CHANNELS:
        return a.mean(axis=0, dtype=np.float32)
    raise UserError(f"audio must be mono samples (N,) or (N, channels), got {a.shape}")


def check_rate(rate: int) -> int:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise UserError(
            f"unsupported sample rate {rate} Hz ({MIN_RATE // 1000} kHz .. {MAX_RATE // 1000} kHz)"
        )
    return rate


class Resampler:
    """Stateful conversion of pushes at ``rate`` Hz to ``target`` Hz."""

    def __init__(self, target: int = 16_000) -> None:
        self.target = target
        self.rate: int | None = None
        self._stream = None

    def __call__(self, samples: np.ndarray, rate: int) -> np.ndarray:
        check_rate(rate)
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
            self.rate = None
            return np.zeros(0, np.float32)
        out = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        self._stream = None
        self.rate = None
        return out.astype(np.float32)


class FormatConverter:
    """int16 ``(N, C)`` pushes of any rate / channel count -> ``rate`` Hz, ``channels``.

    Pushes already in the target format pass through untouched (bit for bit). Others are mixed
    to mono when the channel counts differ, resampled by one streaming ``soxr`` resampler
    (float, no dither; ``flush`` releases its tail), rounded to int16 and copied to every
    target channel.
    """

    def __init__(self, rate: int, channels: int) -> None:
        self.rate, self.channels = check_rate(rate), channels
        self._stream = None
        self._key: tuple[int, int] | None = None  # (input rate, resampled channels)

    def __call__(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        same_layout = pcm.shape[1] == self.channels
        if rate == self.rate and same_layout and self._stream is None:
            return pcm
        x = pcm.astype(np.float32) if same_layout else pcm.mean(axis=1, keepdims=True)
        key = (check_rate(rate), x.shape[1])
        tail = self.flush() if key != self._key else np.zeros((0, self.channels), np.int16)
        if rate == self.rate:
            return np.concatenate([tail, self._to_int16(x)])
        if self._stream is None:
            import soxr

            self._stream = soxr.ResampleStream(rate, self.rate, x.shape[1], dtype="float32")
            self._key = key
        out = self._stream.resample_chunk(x.astype(np.float32), last=False)
        return np.concatenate([tail, self._to_int16(out)])

    def _to_int16(self, x: np.ndarray) -> np.ndarray:
        x = x if x.ndim == 2 else x[:, None]
        x = np.clip(np.round(x), -32768, 32767).astype(np.int16)
        return x if x.shape[1] == self.channels else np.repeat(x, self.channels, axis=1)

    def flush(self) -> np.ndarray:
        """Release what the resampler still holds (end of a segment)."""
        if self._stream is None:
            return np.zeros((0, self.channels), np.int16)
        channels = self._key[1]
        out = self._stream.resample_chunk(np.zeros((0, channels), np.float32), last=True)
        self.reset()
        return self._to_int16(out)

    def reset(self) -> None:
        """Drop what the resampler holds (an interruption)."""
        self._stream, self._key = None, None
