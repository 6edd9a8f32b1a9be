"""LiveKit Agents avatar worker: lip-synced video + audio tracks from the agent's speech.

Follows LiveKit's avatar contract (``livekit.agents.voice.avatar``): the agent streams its TTS
audio to the avatar participant (``DataStreamAudioOutput`` -> ``DataStreamAudioReceiver``); an
``AvatarRunner`` feeds it to a ``VideoGenerator`` and publishes what the generator yields
through an A/V synchronizer. :class:`LipSyncVideoGenerator` is that generator:

- ``push_audio(rtc.AudioFrame)`` -> the session's ``push_audio`` (any rate, resampled);
  ``push_audio(AudioSegmentEnd())`` -> ``end_segment()``;
- ``clear_buffer()`` -> ``clear()`` (interruption: pending audio and unplayed speech frames
  dropped; the runner then reports ``playback_finished`` with ``interrupted=True``);
- iterating yields, per output frame, an RGBA ``rtc.VideoFrame`` and the ``rtc.AudioFrame``
  it plays (16 kHz mono), and ``AudioSegmentEnd()`` after the last frame of an utterance, which
  makes the runner report ``playback_finished`` (``interrupted=False``). Between utterances the
  session yields idle frames (closed mouth, source keeps playing) so the video never stalls.

Needs the optional extra ``lipforcing[livekit]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.session import Frame, StreamSession
from lipforcing.streaming.source import Source

try:
    from livekit import rtc
    from livekit.agents.voice.avatar import (
        AudioSegmentEnd,
        AvatarOptions,
        AvatarRunner,
        DataStreamAudioReceiver,
        VideoGenerator,
    )
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("the LiveKit integration needs `pip install lipforcing[livekit]`") from e


class LipSyncVideoGenerator(VideoGenerator):
    """A LiveKit ``VideoGenerator`` backed by a realtime :class:`StreamSession`."""

    def __init__(self, session: StreamSession) -> None:
        self.session = session

    @classmethod
    def create(cls, pipeline: Pipeline, source: Source, *, seed: int = 0) -> LipSyncVideoGenerator:
        return cls(StreamSession(pipeline, source, seed=seed, realtime=True))

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if isinstance(frame, AudioSegmentEnd):
            self.session.end_segment()
            return
        pcm = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:
            pcm = pcm.reshape(-1, frame.num_channels)
        self.session.push_audio(pcm, frame.sample_rate)

    def clear_buffer(self) -> None:
        self.session.clear()

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._frames()

    async def _frames(self):
        async for frame in self.session.aframes():
            yield video_frame(frame)
            yield audio_frame(frame, self.session.sample_rate)
            if frame.segment_end:
                yield AudioSegmentEnd()

    async def aclose(self) -> None:
        self.session.stop()


def video_frame(frame: Frame) -> rtc.VideoFrame:
    h, w, _ = frame.image.shape
    rgba = np.concatenate([frame.image, np.full((h, w, 1), 255, np.uint8)], axis=2)
    return rtc.VideoFrame(w, h, rtc.VideoBufferType.RGBA, rgba.tobytes())


def audio_frame(frame: Frame, sample_rate: int) -> rtc.AudioFrame:
    pcm = (np.clip(frame.audio, -1, 1) * 32767).astype(np.int16)
    return rtc.AudioFrame(pcm.tobytes(), sample_rate, 1, len(pcm))


async def start_avatar(
    room: rtc.Room, pipeline: Pipeline, source: Source, *, seed: int = 0
) -> AvatarRunner:
    """Start the avatar in a connected ``room``: receive the agent's audio, publish tracks."""
    generator = LipSyncVideoGenerator.create(pipeline, source, seed=seed)
    h, w = source.frame_size
    options = AvatarOptions(
        video_width=w,
        video_height=h,
        video_fps=pipeline.preset.media.fps,
        audio_sample_rate=pipeline.preset.audio.sample_rate,
        audio_channels=1,
    )
    runner = AvatarRunner(
        room, audio_recv=DataStreamAudioReceiver(room), video_gen=generator, options=options
    )
    await runner.start()
    return runner
