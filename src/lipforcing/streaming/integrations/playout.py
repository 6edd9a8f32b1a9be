"""The agent's own audio, held back and handed out frame by frame in step with the lips.

A voice agent's TTS audio arrives at 16, 24 or 48 kHz, mono or stereo. The lips are driven by
a 16 kHz mono copy (the model's input), but what a listener hears must be the original: same
samples, same rate, same channels, only delayed until the frames that mouth it are shown.

:class:`Playout` keeps both. ``push`` stores the original int16 samples and returns the 16 kHz
copy for the :class:`~lipforcing.streaming.session.StreamSession`; every output frame names the
16 kHz samples it plays (``Frame.span``, absolute positions in what was pushed), and ``release``
maps that span back to the original samples and hands them out as :class:`Piece` objects. The
mapping is exact at run boundaries: pushes in one format form a *run* resampled by one
(time-aligned) ``soxr`` stream, so 16 kHz position ``p`` of a run is original sample
``round(p * rate / 16000)``, and the run's last frame takes whatever of it is left. Every
pushed sample is handed out exactly once, in order, unless ``clear`` drops it (an interruption).

Segment ends (``end_segment``) are positions too: ``segment_ends()`` counts those reached by the
audio released so far, including one whose audio had all been played before the end was
announced, so an agent always hears that its utterance finished.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipforcing.errors import UserError
from lipforcing.streaming.pcm import Resampler, check_rate, to_float32


@dataclass(frozen=True)
class Piece:
    """Original audio for (part of) one output frame."""

    pcm: np.ndarray  # (n, channels) int16, exactly as pushed
    rate: int  # Hz
    tag: Any = None  # what the push was labelled with (e.g. a Pipecat frame's context)

    @property
    def channels(self) -> int:
        return self.pcm.shape[1]

    @property
    def samples(self) -> int:
        return self.pcm.shape[0]

    @property
    def duration(self) -> float:
        return self.samples / self.rate

    def tobytes(self) -> bytes:
        """Interleaved little-endian int16, as the frameworks carry it."""
        return self.pcm.astype("<i2", copy=False).tobytes()


@dataclass
class _Push:
    pcm: np.ndarray  # (n, channels) int16
    start: int  # run-relative position of pcm[0]
    tag: Any


@dataclass
class _Run:
    """Consecutive pushes in one format: 16 kHz [at, at + n16) <-> original [0, n)."""

    rate: int
    channels: int
    at: int  # 16 kHz position where the run starts
    target: int  # the 16 kHz copy's rate
    n16: int = 0
    n: int = 0
    released: int = 0  # original samples handed out
    closed: bool = False  # its resampler has been flushed: n16 is final
    pushes: deque[_Push] = field(default_factory=deque)

    def offset(self, pos16: int) -> int:
        """Original samples that play before 16 kHz position ``pos16``."""
        if self.closed and pos16 >= self.at + self.n16:
            return self.n
        return min(self.n, round((pos16 - self.at) * self.rate / self.target))

    def take(self, stop: int) -> list[Piece]:
        """Hand out original samples [released, stop), split where the push tag changes."""
        pieces: list[Piece] = []
        while self.released < stop and self.pushes:
            push = self.pushes[0]
            lo, hi = self.released - push.start, min(stop, push.start + len(push.pcm)) - push.start
            pcm = push.pcm[lo:hi]
            if pieces and pieces[-1].tag == push.tag:
                pcm = np.concatenate([pieces.pop().pcm, pcm])
            pieces.append(Piece(pcm, self.rate, push.tag))
            self.released = push.start + hi
            if hi == len(push.pcm):
                self.pushes.popleft()
        return pieces

    @property
    def done(self) -> bool:
        return self.closed and self.released == self.n


class Playout:
    """Original audio in, 16 kHz copy out; original audio back per output frame."""

    def __init__(self, target: int = 16_000) -> None:
        self.target = target
        self.pushed = 0  # 16 kHz samples handed to the session so far
        self.played = 0  # 16 kHz position up to which audio has been released
        self._resampler = Resampler(target)
        self._runs: deque[_Run] = deque()
        self._marks: deque[int] = deque()

    def push(self, pcm: np.ndarray, rate: int, tag: Any = None) -> np.ndarray:
        """Keep ``pcm`` ((n, channels) int16 at ``rate`` Hz); return its 16 kHz mono copy."""
        pcm = np.array(pcm, copy=True)  # the caller's buffer may be reused
        if pcm.ndim == 1:
            pcm = pcm[:, None]
        if pcm.dtype != np.int16 or pcm.ndim != 2:
            raise UserError(f"audio must be (n, channels) int16, got {pcm.dtype} {pcm.shape}")
        copy = to_float32(pcm)
        run = self._runs[-1] if self._runs and not self._runs[-1].closed else None
        tail = np.zeros(0, np.float32)
        if run is not None and (run.rate, run.channels) != (rate, pcm.shape[1]):
            tail, run = self._close_run(), None
        if run is None:
            run = _Run(check_rate(rate), pcm.shape[1], at=self.pushed, target=self.target)
            self._runs.append(run)
        if len(pcm):
            run.pushes.append(_Push(pcm, run.n, tag))
            run.n += len(pcm)
        out = self._resampler(copy, rate)
        run.n16 += len(out)
        self.pushed += len(out)
        return np.concatenate([tail, out]) if len(tail) else out

    def end_segment(self) -> np.ndarray:
        """The utterance is complete: return the 16 kHz samples still held, mark its end."""
        tail = self._close_run()
        self._marks.append(self.pushed)
        return tail

    def _close_run(self) -> np.ndarray:
        tail = self._resampler.flush()
        if self._runs and not self._runs[-1].closed:
            run = self._runs[-1]
            run.n16 += len(tail)
            run.closed = True
        self.pushed += len(tail)
        return tail

    def clear(self) -> None:
        """Interruption: drop everything not yet released (and the pending segment ends)."""
        self._resampler.flush()
        self._runs.clear()
        self._marks.clear()
        self.played = self.pushed

    def release(self, span: tuple[int, int]) -> list[Piece]:
        """The original audio of the 16 kHz samples before ``span[1]`` not yet handed out."""
        start, stop = span
        if stop <= start or stop <= self.played:
            return []
        pieces: list[Piece] = []
        for run in self._runs:
            if run.at >= stop:
                break
            pieces += run.take(run.offset(stop))
        while self._runs and self._runs[0].done:
            self._runs.popleft()
        self.played = stop
        return pieces

    def segment_ends(self) -> int:
        """How many announced segment ends the released audio has reached (each counted once)."""
        count = 0
        while self._marks and self._marks[0] <= self.played:
            self._marks.popleft()
            count += 1
        return count

    @property
    def pending(self) -> bool:
        """Pushed audio not yet released."""
        return self.played < self.pushed
