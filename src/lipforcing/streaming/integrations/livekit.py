"""LiveKit Agents: a lip-synced avatar worker, and the agent-side session that feeds it.

LiveKit's avatar contract (``livekit.agents.voice.avatar``): the agent streams its TTS audio to
the avatar participant (``DataStreamAudioOutput`` -> ``DataStreamAudioReceiver``); an
``AvatarRunner`` in the avatar worker feeds it to a ``VideoGenerator`` and publishes what the
generator yields through an A/V synchroniser; the runner reports ``lk.playback_started`` /
``lk.playback_finished`` (with the played duration) back to the agent, which is how the agent
knows what its user heard.

Avatar worker side:

- :class:`LipSyncVideoGenerator` is the ``VideoGenerator``. ``push_audio(rtc.AudioFrame)``
  feeds the stream (any rate and channel count; converted to the published format if it
  differs); ``push_audio(AudioSegmentEnd())`` ends the utterance; ``clear_buffer()`` drops the
  unplayed audio and frames (an interruption). Iterating yields, per output frame, an RGBA
  ``rtc.VideoFrame`` and, for speech frames only, the ``rtc.AudioFrame`` holding the agent's
  own samples for that frame (bit for bit, at the published rate): idle frames are video only,
  so the runner's ``playback_position`` is exactly the audio played. ``AudioSegmentEnd()``
  follows the frame that plays an utterance's last sample, also when all of it had been played
  before the end arrived, so ``lk.playback_finished`` always reaches the agent.
- :func:`start_avatar` warms the model up (as ``serve`` does), then starts an ``AvatarRunner``
  in a connected room; :func:`accept_avatar_job` accepts an explicit dispatch made by
  :class:`LipSyncAvatar` under the identity that session expects.

Agent side:

- :class:`LipSyncAvatar` (a LiveKit ``AvatarSession``) dispatches the avatar worker to the room
  and points ``agent_session.output.audio`` at it: a ``DataStreamAudioOutput`` with the avatar's
  ``destination_identity`` and ``sample_rate``, waiting for its video track before sending.

Settings that must agree on both sides: the avatar's identity, the worker's agent name (explicit
dispatch), and the audio sample rate / channels (the agent resamples its TTS to them; the
avatar publishes them). ``examples/livekit_agent.py`` and ``examples/livekit_avatar.py`` are a
runnable pair. Needs the optional extra ``lipforcing[livekit]``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import numpy as np

from lipforcing.extras import needs
from lipforcing.streaming.integrations.playout import Piece
from lipforcing.streaming.integrations.stream import AgentStream, warm_up
from lipforcing.streaming.pcm import FormatConverter, interleaved
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.session import Frame, StreamSession
from lipforcing.streaming.source import Source

with needs("livekit", "the LiveKit integration"):
    from livekit import rtc
    from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
    from livekit.agents.voice.avatar import (
        AudioSegmentEnd,
        AvatarOptions,
        AvatarRunner,
        AvatarSession,
        DataStreamAudioOutput,
        DataStreamAudioReceiver,
        VideoGenerator,
    )

AVATAR_IDENTITY = "lipforcing-avatar"  # the avatar participant's identity
AVATAR_AGENT_NAME = "lipforcing-avatar"  # the avatar worker's agent name (explicit dispatch)
SAMPLE_RATE = 24_000  # Hz of the audio sent to and published by the avatar
CHANNELS = 1


class LipSyncVideoGenerator(VideoGenerator):
    """A LiveKit ``VideoGenerator`` backed by a live lip-sync stream (see the module docstring)."""

    def __init__(
        self, stream: AgentStream, *, sample_rate: int = SAMPLE_RATE, channels: int = CHANNELS
    ) -> None:
        self.stream = stream
        self._convert = FormatConverter(sample_rate, channels)

    @classmethod
    def create(
        cls,
        pipeline: Pipeline,
        source: Source,
        *,
        seed: int = 0,
        realtime: bool = True,
        sample_rate: int = SAMPLE_RATE,
        channels: int = CHANNELS,
    ) -> LipSyncVideoGenerator:
        stream = AgentStream.create(pipeline, source, seed=seed, realtime=realtime)
        return cls(stream, sample_rate=sample_rate, channels=channels)

    @property
    def session(self) -> StreamSession:
        return self.stream.session

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if isinstance(frame, AudioSegmentEnd):
            tail = self._convert.flush()
            if len(tail):
                self.stream.push(tail, self._convert.rate)
            self.stream.end_segment()
            return
        pcm = interleaved(frame.data, frame.num_channels)
        self.stream.push(self._convert(pcm, frame.sample_rate), self._convert.rate)

    def clear_buffer(self) -> None:
        self._convert.reset()
        self.stream.clear()

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._frames()

    async def _frames(self):
        async for played in self.stream:
            if played.frame is not None:
                yield video_frame(played.frame)
            for piece in played.audio:
                yield audio_frame(piece)
            for _ in range(played.segment_ends):
                yield AudioSegmentEnd()

    async def aclose(self) -> None:
        self.stream.stop()


def video_frame(frame: Frame) -> rtc.VideoFrame:
    h, w, _ = frame.image.shape
    rgba = np.concatenate([frame.image, np.full((h, w, 1), 255, np.uint8)], axis=2)
    return rtc.VideoFrame(w, h, rtc.VideoBufferType.RGBA, rgba.tobytes())


def audio_frame(piece: Piece) -> rtc.AudioFrame:
    return rtc.AudioFrame(piece.tobytes(), piece.rate, piece.channels, piece.samples)


def avatar_options(
    pipeline: Pipeline, source: Source, sample_rate: int = SAMPLE_RATE, channels: int = CHANNELS
) -> AvatarOptions:
    h, w = source.frame_size
    return AvatarOptions(
        video_width=w,
        video_height=h,
        video_fps=pipeline.preset.media.fps,
        audio_sample_rate=sample_rate,
        audio_channels=channels,
    )


async def start_avatar(
    room: rtc.Room,
    pipeline: Pipeline,
    source: Source,
    *,
    seed: int = 0,
    sample_rate: int = SAMPLE_RATE,
    channels: int = CHANNELS,
    warmup: bool = True,
) -> AvatarRunner:
    """Start the avatar in a connected ``room``: receive the agent's audio, publish A/V tracks.

    ``sample_rate`` / ``channels`` are those of the published audio track; the agent should send
    the same (:class:`LipSyncAvatar` does), else the audio is converted. ``warmup`` runs the
    runtime's warm-up first, so the first utterance does not pay one-off start-up costs.
    """
    if warmup:
        await warm_up(pipeline, source)
    generator = LipSyncVideoGenerator.create(
        pipeline, source, seed=seed, sample_rate=sample_rate, channels=channels
    )
    runner = AvatarRunner(
        room,
        audio_recv=DataStreamAudioReceiver(room),
        video_gen=generator,
        options=avatar_options(pipeline, source, sample_rate, channels),
    )
    await runner.start()
    return runner


async def accept_avatar_job(request) -> None:
    """``on_request`` of the avatar worker: join under the identity :class:`LipSyncAvatar` sent
    in the dispatch metadata, publishing on behalf of the agent that dispatched it."""
    meta = json.loads(request.job.metadata or "{}")
    attributes = {}
    if meta.get("publish_on_behalf"):
        attributes[ATTRIBUTE_PUBLISH_ON_BEHALF] = meta["publish_on_behalf"]
    await request.accept(
        name="lipforcing avatar",
        identity=meta.get("identity", AVATAR_IDENTITY),
        attributes=attributes,
    )


class LipSyncAvatar(AvatarSession):
    """Agent side: send the agent's speech to a lipforcing avatar worker in the same room.

    Args:
        avatar_identity: the avatar participant's identity (the worker joins under it).
        sample_rate: Hz the agent resamples its TTS audio to; the avatar publishes this rate.
        dispatch: dispatch the avatar worker (registered as ``agent_name``) to the room through
            LiveKit's agent-dispatch API; False when it is started some other way.
        agent_name: the avatar worker's agent name.
    """

    def __init__(
        self,
        *,
        avatar_identity: str = AVATAR_IDENTITY,
        sample_rate: int = SAMPLE_RATE,
        dispatch: bool = True,
        agent_name: str = AVATAR_AGENT_NAME,
    ) -> None:
        super().__init__()
        self._identity = avatar_identity
        self.sample_rate = sample_rate
        self.dispatch = dispatch
        self.agent_name = agent_name

    @property
    def avatar_identity(self) -> str:
        return self._identity

    @property
    def provider(self) -> str:
        return "lipforcing"

    async def start(self, agent_session, room: rtc.Room) -> None:
        await super().start(agent_session, room)
        if self.dispatch:
            await self._dispatch(room)
        agent_session.output.audio = DataStreamAudioOutput(
            room,
            destination_identity=self._identity,
            sample_rate=self.sample_rate,
            wait_remote_track=rtc.TrackKind.KIND_VIDEO,
        )

    def dispatch_request(self, room_name: str, agent_identity: str):
        """The explicit dispatch of the avatar worker (read back by :func:`accept_avatar_job`)."""
        from livekit import api

        meta = {"identity": self._identity, "publish_on_behalf": agent_identity}
        return api.CreateAgentDispatchRequest(
            agent_name=self.agent_name, room=room_name, metadata=json.dumps(meta)
        )

    async def _dispatch(self, room: rtc.Room) -> None:
        from livekit import api
        from livekit.agents import get_job_context

        request = self.dispatch_request(room.name, room.local_participant.identity)
        job = get_job_context(required=False)
        if job is not None:
            await job.api.agent_dispatch.create_dispatch(request)
            return
        async with api.LiveKitAPI() as lk:  # LIVEKIT_URL / LIVEKIT_API_KEY / _SECRET
            await lk.agent_dispatch.create_dispatch(request)
