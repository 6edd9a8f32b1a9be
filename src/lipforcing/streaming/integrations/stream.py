"""What both voice-agent integrations share: a stream fed by an agent's speech.

:class:`AgentStream` couples a :class:`~lipforcing.streaming.session.StreamSession` (the lips,
driven by a 16 kHz mono copy) with a :class:`~.playout.Playout` (the original audio, held back)
and yields :class:`Played` items: one output frame, the original audio that plays with it
(empty for idle frames, so idle output is video only), and the number of utterances whose
last audio has now been played. The LiveKit and Pipecat adapters only translate these into
their frame types.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from lipforcing.streaming.integrations.playout import Piece, Playout
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.session import Frame, StreamSession
from lipforcing.streaming.source import Source


@dataclass(frozen=True)
class Played:
    """One output frame and the original audio that plays with it."""

    frame: Frame | None  # None only for segment ends reported after the stream has ended
    audio: list[Piece]  # empty for idle frames
    segment_ends: int  # utterances finished with this frame (their last audio is in `audio`)


class AgentStream:
    """A live lip-sync stream fed with an agent's speech (int16, any rate and channels)."""

    def __init__(self, session: StreamSession) -> None:
        self.session = session
        self.playout = Playout(session.sample_rate)

    @classmethod
    def create(
        cls, pipeline: Pipeline, source: Source, *, seed: int = 0, realtime: bool = True
    ) -> AgentStream:
        return cls(StreamSession(pipeline, source, seed=seed, realtime=realtime))

    def push(self, pcm: np.ndarray, rate: int, tag: Any = None) -> None:
        """Append ``(n, channels)`` int16 audio at ``rate`` Hz; ``tag`` labels its pieces."""
        self.session.push_audio(self.playout.push(pcm, rate, tag), self.session.sample_rate)

    def end_segment(self) -> None:
        """The utterance is complete (its end is reported even if it has all played already)."""
        tail = self.playout.end_segment()
        if len(tail):
            self.session.push_audio(tail, self.session.sample_rate)
        self.session.end_segment()

    def clear(self) -> None:
        """Interruption: drop the audio not yet played and the frames not yet shown."""
        self.playout.clear()
        self.session.clear()

    def close(self) -> None:
        """No more audio: the frames end after what is pending has played."""
        self.end_segment()
        self.session.close()

    def stop(self) -> None:
        self.session.stop()

    @property
    def pending(self) -> bool:
        """Audio pushed whose frames have not been shown yet."""
        return self.playout.pending

    @property
    def position(self) -> int:
        """16 kHz samples pushed so far (the position of whatever arrives next)."""
        return self.playout.pushed

    @property
    def played(self) -> int:
        """16 kHz position up to which audio has been played."""
        return self.playout.played

    async def __aiter__(self) -> AsyncIterator[Played]:
        async for frame in self.session.aframes():
            yield Played(frame, self.playout.release(frame.span), self.playout.segment_ends())
        ends = self.playout.segment_ends()
        if ends:
            yield Played(None, [], ends)


async def warm_up(pipeline: Pipeline, source: Source) -> float:
    """The runtime's warm-up (one-off start-up costs) off the event loop; returns its seconds."""
    from lipforcing.streaming.engine import warmup

    return await asyncio.to_thread(warmup, pipeline, source)
