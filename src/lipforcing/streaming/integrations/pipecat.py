"""Pipecat frame processor: TTS audio in, lip-synced image frames and the audio they play out.

Place :class:`LipSyncProcessor` after the TTS service and before the output transport:

- ``TTSAudioRawFrame`` (any rate) is consumed and pushed into a :class:`StreamSession`;
- ``TTSStoppedFrame`` ends the utterance (its last partial chunk is generated);
- ``InterruptionFrame`` clears the buffer (pending audio and unplayed speech frames dropped);
- a background task pushes, per output frame, an ``OutputImageRawFrame`` (RGB) followed by the
  ``OutputAudioRawFrame`` (16 kHz mono int16) it plays, so the transport keeps them in sync;
  with ``realtime=True`` (the default) frames are paced at the video rate and idle frames keep
  coming between utterances;
- ``EndFrame`` lets the pending audio finish first; ``CancelFrame`` stops at once.

Needs the optional extra ``lipforcing[pipecat]``.
"""

from __future__ import annotations

import numpy as np

from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.session import Frame, StreamSession
from lipforcing.streaming.source import Source

try:
    from pipecat.frames.frames import (
        CancelFrame,
        EndFrame,
        InterruptionFrame,
        OutputAudioRawFrame,
        OutputImageRawFrame,
        StartFrame,
        TTSAudioRawFrame,
        TTSStoppedFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Pipecat integration needs `pip install lipforcing[pipecat]`") from e


class LipSyncProcessor(FrameProcessor):
    """Turns a bot's TTS audio into a lip-synced video of ``source``."""

    def __init__(
        self,
        pipeline: Pipeline,
        source: Source,
        *,
        seed: int = 0,
        realtime: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self._pipeline, self._source = pipeline, source
        self._seed, self._realtime = seed, realtime
        self.session: StreamSession | None = None
        self._task = None

    async def process_frame(self, frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            self._start()
        elif isinstance(frame, TTSAudioRawFrame):
            pcm = np.frombuffer(frame.audio, dtype=np.int16)
            if frame.num_channels > 1:
                pcm = pcm.reshape(-1, frame.num_channels)
            self.session.push_audio(pcm, frame.sample_rate)
        elif isinstance(frame, TTSStoppedFrame):
            self.session.end_segment()
            await self.push_frame(frame, direction)
        elif isinstance(frame, InterruptionFrame):
            self.session.clear()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndFrame):
            await self._finish(drain=True)
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            await self._finish(drain=False)
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    def _start(self) -> None:
        if self.session is None:
            self.session = StreamSession(
                self._pipeline, self._source, seed=self._seed, realtime=self._realtime
            )
            self._task = self.create_task(self._forward())

    async def _forward(self) -> None:
        async for frame in self.session.aframes():
            await self.push_frame(image_frame(frame))
            await self.push_frame(audio_frame(frame, self.session.sample_rate))

    async def _finish(self, drain: bool) -> None:
        if self.session is None:
            return
        if drain:
            self.session.close()
            await self._task
        else:
            self.session.stop()
            await self.cancel_task(self._task)
        self.session.stop()


def image_frame(frame: Frame) -> OutputImageRawFrame:
    h, w, _ = frame.image.shape
    return OutputImageRawFrame(image=frame.image.tobytes(), size=(w, h), format="RGB")


def audio_frame(frame: Frame, sample_rate: int) -> OutputAudioRawFrame:
    pcm = (np.clip(frame.audio, -1, 1) * 32767).astype(np.int16)
    return OutputAudioRawFrame(audio=pcm.tobytes(), sample_rate=sample_rate, num_channels=1)
