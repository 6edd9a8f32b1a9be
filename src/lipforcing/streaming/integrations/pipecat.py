"""Pipecat frame processor: the bot's speech in, lip-synced video and the same speech out.

Place :class:`LipSyncProcessor` after the TTS service and before the output transport:

- ``TTSAudioRawFrame`` / ``SpeechOutputAudioRawFrame`` (any rate, mono or stereo) are consumed:
  a 16 kHz mono copy drives the lips, the original is held back;
- per output frame it pushes an ``OutputImageRawFrame`` (RGB) and, for speech frames, the
  original audio of that frame as a frame of the type it arrived as (``TTSAudioRawFrame`` with
  its ``context_id``, bit for bit, at its own rate), so the output transport tracks bot speech
  exactly as without this processor: ``BotStartedSpeakingFrame`` / ``BotStoppedSpeakingFrame``,
  RTVI speaking events, ``MuteUntilFirstBotComplete``, idle timeouts. Idle frames are video only;
- every other downstream frame (``TTSStoppedFrame``, text frames, ...) keeps its place after the
  audio that came before it: it is held until that audio has been pushed out. A
  ``TTSStoppedFrame`` also ends the utterance (its last partial chunk is generated);
- ``InterruptionFrame`` clears the stream (unplayed audio and frames dropped, held frames too,
  except uninterruptible ones) and passes on; other system frames and upstream frames pass at
  once;
- ``EndFrame`` lets the pending audio finish first; ``CancelFrame`` stops at once.

With ``realtime=True`` (the default) frames leave at the video rate and idle frames keep coming
between utterances. ``warmup=True`` runs the runtime's warm-up (off the event loop) when the
``StartFrame`` arrives, so the first utterance does not pay one-off start-up costs.

Output transport settings (``TransportParams``): ``audio_out_enabled=True``,
``audio_out_sample_rate`` = the TTS rate (the transport resamples anything else),
``video_out_enabled=True``, ``video_out_width`` / ``video_out_height`` = the source's frame
size, ``video_out_framerate`` = the preset's fps (25), and ``video_out_is_live=False`` with the
default ``sync_with_audio=True``: each image then travels in the transport's audio queue and is
shown when the audio before it has been written, which keeps lips and sound together on any
transport. (``sync_with_audio=False`` with ``video_out_is_live=True`` paces the images in the
transport's own video queue instead.) ``examples/pipecat_pipeline.py`` is a runnable pipeline.
One difference remains with ``sync_with_audio``: the images keep the transport's audio queue
busy, so its 3 s "no audio, the bot stopped speaking" fallback does not fire; the bot stops
speaking on ``TTSStoppedFrame`` (which Pipecat's TTS services send) or an interruption, as usual.

Needs the optional extra ``lipforcing[pipecat]``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from lipforcing.extras import needs
from lipforcing.streaming.integrations.playout import Piece
from lipforcing.streaming.integrations.stream import AgentStream, warm_up
from lipforcing.streaming.pcm import interleaved
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.session import Frame, StreamSession
from lipforcing.streaming.source import Source

with needs("pipecat", "the Pipecat integration"):
    from pipecat.frames.frames import (
        CancelFrame,
        EndFrame,
        InterruptionFrame,
        OutputImageRawFrame,
        SpeechOutputAudioRawFrame,
        StartFrame,
        SystemFrame,
        TTSAudioRawFrame,
        TTSStoppedFrame,
        UninterruptibleFrame,
    )
    from pipecat.frames.frames import Frame as PipecatFrame
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


@dataclass(frozen=True)
class _Origin:
    """What an audio push arrived as; its pieces go out as the same frame type."""

    kind: type
    context_id: str | None


class LipSyncProcessor(FrameProcessor):
    """Turns a bot's speech into a lip-synced video of ``source`` (see the module docstring)."""

    def __init__(
        self,
        pipeline: Pipeline,
        source: Source,
        *,
        seed: int = 0,
        realtime: bool = True,
        warmup: bool = True,
        sync_with_audio: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self._pipeline, self._source = pipeline, source
        self._seed, self._realtime, self._warmup = seed, realtime, warmup
        self._sync_with_audio = sync_with_audio
        self.stream: AgentStream | None = None
        self._task = None
        self._held: deque[tuple[int, PipecatFrame]] = deque()  # (audio position, frame)
        self._played_out = 0  # 16 kHz position of the audio pushed out so far
        self._release_lock = asyncio.Lock()

    @property
    def session(self) -> StreamSession | None:
        return None if self.stream is None else self.stream.session

    async def process_frame(self, frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self._start()
            await self.push_frame(frame, direction)
        elif direction == FrameDirection.UPSTREAM:
            await self.push_frame(frame, direction)
        elif isinstance(frame, TTSAudioRawFrame | SpeechOutputAudioRawFrame):
            origin = _Origin(type(frame), getattr(frame, "context_id", None))
            pcm = interleaved(frame.audio, frame.num_channels)
            self.stream.push(pcm, frame.sample_rate, tag=origin)
        elif isinstance(frame, TTSStoppedFrame):
            self.stream.end_segment()
            await self._hold(frame)
        elif isinstance(frame, InterruptionFrame):
            self.stream.clear()
            self._played_out = self.stream.played
            self._held = deque(h for h in self._held if isinstance(h[1], UninterruptibleFrame))
            await self.push_frame(frame, direction)
            await self._release(everything=True)
        elif isinstance(frame, EndFrame):
            await self._finish(drain=True)
            await self._release(everything=True)
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            await self._finish(drain=False)
            await self.push_frame(frame, direction)
        elif isinstance(frame, SystemFrame):
            await self.push_frame(frame, direction)
        else:
            await self._hold(frame)

    async def _start(self) -> None:
        if self.stream is not None:
            return
        if self._warmup:
            await warm_up(self._pipeline, self._source)
        self.stream = AgentStream.create(
            self._pipeline, self._source, seed=self._seed, realtime=self._realtime
        )
        self._task = self.create_task(self._forward())

    async def _hold(self, frame: PipecatFrame) -> None:
        """Pass ``frame`` on after the audio pushed before it has been played out."""
        self._held.append((self.stream.position, frame))
        await self._release()

    async def _release(self, everything: bool = False) -> None:
        async with self._release_lock:
            while self._held and (everything or self._held[0][0] <= self._played_out):
                await self.push_frame(self._held.popleft()[1])

    async def _forward(self) -> None:
        async for played in self.stream:
            if played.frame is not None:
                await self.push_frame(image_frame(played.frame, self._sync_with_audio))
            for piece in played.audio:
                await self.push_frame(audio_frame(piece))
            self._played_out = self.stream.played
            await self._release()

    async def _finish(self, drain: bool) -> None:
        if self.stream is None:
            return
        if drain:
            self.stream.close()
            await self._task
        else:
            self.stream.stop()
            await self.cancel_task(self._task)
        self.stream.stop()


def image_frame(frame: Frame, sync_with_audio: bool = True) -> OutputImageRawFrame:
    h, w, _ = frame.image.shape
    out = OutputImageRawFrame(image=frame.image.tobytes(), size=(w, h), format="RGB")
    out.sync_with_audio = sync_with_audio  # a field, but not an __init__ argument
    return out


def audio_frame(piece: Piece) -> TTSAudioRawFrame | SpeechOutputAudioRawFrame:
    origin = piece.tag if isinstance(piece.tag, _Origin) else _Origin(TTSAudioRawFrame, None)
    out = origin.kind(audio=piece.tobytes(), sample_rate=piece.rate, num_channels=piece.channels)
    if origin.context_id is not None:
        out.context_id = origin.context_id
    return out
