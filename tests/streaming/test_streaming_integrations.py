"""Voice-agent integrations against the real libraries (skipped when an extra is not installed).

LiveKit: the real ``AvatarRunner`` with ``QueueAudioOutput`` (the agent-side audio output that
doubles as the avatar's receiver), real FFI audio/video sources and A/V synchroniser, and a stub
room (no server). Pipecat: ``run_test`` through a real ``BaseOutputTransport`` whose sink plays
audio in real time, against a control run of the same frames without the processor. Realtime
runs are short (about a second of speech each).
"""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest
import soxr
from streaming_inputs import speech_like

from lipforcing.streaming.integrations.stream import AgentStream
from lipforcing.streaming.session import StreamSession

FRAME_S = 0.04  # one video frame at 25 fps


def int16(x: np.ndarray, channels: int = 1) -> np.ndarray:
    """(n, channels) int16 of a float signal, the channels differing (right = -left / 2)."""
    x = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)
    if channels == 1:
        return x[:, None]
    return np.stack([x, -(x // 2)], axis=1)


def test_agent_stream_plays_the_input_delayed_to_its_frames(pipeline, source):
    """Each frame carries the original samples of exactly its 16 kHz span, and that span is
    what its lips were generated from; over the utterance the original comes back bit for bit."""
    rate = 24_000
    pcm = int16(speech_like(0.9, rate=rate), channels=2)
    copy16 = soxr.resample(pcm.mean(1) / 32768, rate, 16_000).astype(np.float32)

    async def main():
        stream = AgentStream(StreamSession(pipeline, source, seed=0))
        for i in range(0, len(pcm), 240):  # 10 ms frames
            stream.push(pcm[i : i + 240], rate)
        stream.close()
        return [p async for p in stream]

    played = asyncio.run(main())
    speech = [p for p in played if p.frame is not None and p.frame.speech]
    assert speech and all(p.audio for p in speech)
    assert not any(p.audio for p in played if p.frame is not None and not p.frame.speech)
    for p in speech:
        a, b = p.frame.span
        got = np.concatenate([piece.pcm for piece in p.audio])
        assert all(piece.rate == rate and piece.channels == 2 for piece in p.audio)
        lo = round(a * rate / 16_000)
        assert np.array_equal(got, pcm[lo : lo + len(got)])  # its own time span, exactly
        assert abs(len(got) - (b - a) * rate / 16_000) <= 1
        user = p.frame.audio[: b - a]  # offline: an utterance is never padded on the left
        np.testing.assert_allclose(user, copy16[a:b], atol=2e-3)  # the lips saw this audio
    out = np.concatenate([piece.pcm for p in played for piece in p.audio])
    assert np.array_equal(out, pcm)
    assert sum(p.segment_ends for p in played) == 1


# ---------------------------------------------------------------------------------- LiveKit


class _Publication:
    async def wait_for_subscription(self) -> None:
        pass


class _Participant:
    identity = "agent"

    async def publish_track(self, track, options):
        return _Publication()


def stub_room():
    """What ``AvatarRunner`` and ``DataStreamAudioOutput`` need of a connected room."""
    from livekit import rtc

    class StubRoom(rtc.EventEmitter):
        name = "stub-room"

        def __init__(self) -> None:
            super().__init__()
            self.local_participant = _Participant()

        def isconnected(self) -> bool:
            return True

    return StubRoom()


class Avatar:
    """A real AvatarRunner fed through QueueAudioOutput, recording what the generator yields."""

    def __init__(self, pipeline, source, rate: int, channels: int) -> None:
        from livekit.agents.voice.avatar import AvatarRunner, QueueAudioOutput

        from lipforcing.streaming.integrations.livekit import LipSyncVideoGenerator, avatar_options

        self.rate, self.channels = rate, channels
        self.output = QueueAudioOutput(sample_rate=rate)  # the agent's side of the pair
        self.generator = LipSyncVideoGenerator.create(
            pipeline, source, sample_rate=rate, channels=channels
        )
        self.items: list = []
        recorder = _Recorder(self.generator, self.items)
        options = avatar_options(pipeline, source, rate, channels)
        self.runner = AvatarRunner(stub_room(), audio_recv=self.output, video_gen=recorder,
                                   options=options)  # fmt: skip
        self.synced_s = 0.0  # audio the runner has handed to its A/V synchroniser
        self.runner.av_sync.push = self._counting(self.runner.av_sync.push)

    def _counting(self, push):
        from livekit import rtc

        async def counted(frame, *args, **kwargs):
            await push(frame, *args, **kwargs)
            if isinstance(frame, rtc.AudioFrame):
                self.synced_s += frame.duration

        return counted

    async def say(self, pcm: np.ndarray, flush: bool = True) -> None:
        from livekit import rtc

        step = self.rate // 100  # 10 ms frames, as an agent's TTS sends them
        for i in range(0, len(pcm), step):
            piece = np.ascontiguousarray(pcm[i : i + step])
            frame = rtc.AudioFrame(piece.tobytes(), self.rate, self.channels, len(piece))
            await self.output.capture_frame(frame)
        if flush:
            self.output.flush()

    def audio(self) -> np.ndarray:
        from livekit import rtc

        frames = [x for x in self.items if isinstance(x, rtc.AudioFrame)]
        assert all(f.sample_rate == self.rate and f.num_channels == self.channels for f in frames)
        data = b"".join(bytes(f.data) for f in frames)
        return np.frombuffer(data, np.int16).reshape(-1, self.channels)

    def audio_seconds(self) -> float:
        return len(self.audio()) / self.rate

    async def close(self) -> None:
        await self.runner.aclose()
        await self.generator.aclose()


class _Recorder:
    """Passes the generator through unchanged, keeping a copy of every item it yields."""

    def __init__(self, generator, items: list) -> None:
        self.generator, self.items = generator, items

    async def push_audio(self, frame) -> None:
        await self.generator.push_audio(frame)

    def clear_buffer(self):
        return self.generator.clear_buffer()

    async def _iterate(self):
        async for item in self.generator:
            self.items.append(item)
            yield item

    def __aiter__(self):
        return self._iterate()


def run(coro, timeout: float = 120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.mark.parametrize(("rate", "channels"), [(24_000, 1), (48_000, 2)])
def test_livekit_playback_position_is_the_audio_played(pipeline, source, rate, channels):
    pytest.importorskip("livekit.agents")
    from livekit import rtc
    from livekit.agents.voice.avatar import AudioSegmentEnd

    pcm = int16(speech_like(1.0, rate=rate, seed=1), channels)

    async def main():
        avatar = Avatar(pipeline, source, rate, channels)
        await avatar.runner.start()
        while len(avatar.items) < 5:  # idle frames first
            await asyncio.sleep(0.01)
        await avatar.say(pcm)
        event = await avatar.output.wait_for_playout()
        await avatar.close()
        return avatar, event

    avatar, event = run(main())
    assert not event.interrupted
    assert abs(event.playback_position - 1.0) <= FRAME_S
    assert np.array_equal(avatar.audio(), pcm)  # the agent's samples, bit for bit, same rate
    kinds = [type(x) for x in avatar.items]
    first_audio = kinds.index(rtc.AudioFrame)
    assert kinds[:first_audio].count(rtc.VideoFrame) >= 5  # idle frames: video only
    assert kinds.count(AudioSegmentEnd) == 1
    end = kinds.index(AudioSegmentEnd)
    assert kinds[end - 1] is rtc.AudioFrame and rtc.AudioFrame not in kinds[end:]
    # audio rides with the frames that mouth it: never more than one frame of it per video frame
    runs = [len(list(g)) for k, g in itertools.groupby(kinds) if k is rtc.AudioFrame]
    assert max(runs) <= 2  # a frame's audio is one piece (two where an utterance starts)


@pytest.mark.parametrize("rate", [16_000, 24_000])
def test_livekit_playback_finished_arrives_when_the_end_comes_late(pipeline, source, rate):
    """All the audio the stream holds has played before the agent flushes: the end is still
    reported (at 24 kHz the resampler still holds a few samples, flushed by the end)."""
    pytest.importorskip("livekit.agents")
    pcm = int16(speech_like(0.5, rate=rate, seed=2))

    async def main():
        avatar = Avatar(pipeline, source, rate, 1)
        await avatar.runner.start()
        await avatar.say(pcm, flush=False)
        stream = avatar.generator.stream
        while stream.pending or avatar.audio_seconds() < 0.4:  # the queue has run dry
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        avatar.output.flush()
        event = await asyncio.wait_for(avatar.output.wait_for_playout(), 5)
        await avatar.close()
        return avatar, event

    avatar, event = run(main())
    assert not event.interrupted
    assert event.playback_position == pytest.approx(0.5, abs=1e-6)
    assert np.array_equal(avatar.audio(), pcm)


def test_livekit_interruption_reports_the_position_reached(pipeline, source):
    pytest.importorskip("livekit.agents")
    pcm = int16(speech_like(3.0, rate=24_000, seed=3))

    async def main():
        avatar = Avatar(pipeline, source, 24_000, 1)
        await avatar.runner.start()
        await avatar.say(pcm)
        while avatar.audio_seconds() < 0.6:
            await asyncio.sleep(0.005)
        reached = avatar.audio_seconds()
        synced = []
        avatar.output.on("playback_finished", lambda ev: synced.append(avatar.synced_s))
        avatar.output.clear_buffer()  # the agent's interruption (lk.clear_buffer)
        event = await asyncio.wait_for(avatar.output.wait_for_playout(), 5)
        await asyncio.sleep(0.3)
        await avatar.close()
        return avatar, event, reached, synced[0]

    avatar, event, reached, synced = run(main())
    assert event.interrupted
    # the position is the agent audio the runner had sent on (no idle audio counted), which
    # is at most what the generator had yielded when the interruption came
    assert event.playback_position == pytest.approx(synced, abs=1e-6)
    assert 0.3 < event.playback_position <= reached + FRAME_S
    played = avatar.audio()
    assert len(played) / 24_000 <= reached + FRAME_S  # nothing after the interruption
    assert np.array_equal(played, pcm[: len(played)])


def test_livekit_converts_audio_sent_in_another_format(pipeline, source):
    pytest.importorskip("livekit.agents")
    from livekit import rtc
    from livekit.agents.voice.avatar import AudioSegmentEnd

    from lipforcing.streaming.integrations.livekit import LipSyncVideoGenerator

    pcm = int16(speech_like(0.6, rate=48_000, seed=4), channels=2)

    async def main():
        gen = LipSyncVideoGenerator.create(pipeline, source, realtime=False, sample_rate=24_000)
        await gen.push_audio(rtc.AudioFrame(pcm.tobytes(), 48_000, 2, len(pcm)))
        await gen.push_audio(AudioSegmentEnd())
        gen.stream.close()
        return [x async for x in gen]

    items = asyncio.run(main())
    audio = [x for x in items if isinstance(x, rtc.AudioFrame)]
    assert {(a.sample_rate, a.num_channels) for a in audio} == {(24_000, 1)}
    got = np.frombuffer(b"".join(bytes(a.data) for a in audio), np.int16)
    want = soxr.resample(pcm.mean(1), 48_000, 24_000)
    assert len(got) == len(want)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 2


def test_livekit_avatar_session_points_the_agent_at_the_avatar():
    pytest.importorskip("livekit.agents")
    from livekit.agents import AgentSession
    from livekit.agents.voice.avatar import DataStreamAudioOutput

    from lipforcing.streaming.integrations.livekit import LipSyncAvatar

    async def main():
        session = AgentSession()
        avatar = LipSyncAvatar(avatar_identity="face-1", sample_rate=48_000, dispatch=False)
        await avatar.start(session, stub_room())
        out = session.output.audio
        await avatar.aclose()
        return out

    out = asyncio.run(main())
    assert isinstance(out, DataStreamAudioOutput)
    assert out._destination_identity == "face-1" and out.sample_rate == 48_000


# ---------------------------------------------------------------------------------- Pipecat


def recording_transport(size: tuple[int, int], rate: int, channels: int):
    """A real Pipecat output transport whose sink records what it is given, in real time."""
    from pipecat.transports.base_output import BaseOutputTransport
    from pipecat.transports.base_transport import TransportParams

    class RecordingOutput(BaseOutputTransport):
        def __init__(self) -> None:
            h, w = size
            params = TransportParams(
                audio_out_enabled=True,
                audio_out_sample_rate=rate,
                audio_out_channels=channels,
                audio_out_end_silence_secs=0,
                video_out_enabled=True,
                video_out_width=w,
                video_out_height=h,
                video_out_framerate=25,
            )
            super().__init__(params)
            self.audio: list[bytes] = []
            self.images = 0

        async def start(self, frame) -> None:
            await super().start(frame)
            await self.set_transport_ready(frame)

        async def write_audio_frame(self, frame) -> bool:
            self.audio.append(frame.audio)
            await asyncio.sleep(frame.num_frames / frame.sample_rate)  # a sink plays in real time
            return True

        async def write_video_frame(self, frame) -> bool:
            self.images += 1
            return True

    return RecordingOutput()


def tts_frames(pcm: np.ndarray, rate: int, context: str = "ctx-1") -> list:
    from pipecat.frames.frames import (
        TTSAudioRawFrame,
        TTSStartedFrame,
        TTSStoppedFrame,
        TTSTextFrame,
    )

    step = rate // 10  # 100 ms chunks, as TTS services push them
    audio = [
        TTSAudioRawFrame(
            audio=np.ascontiguousarray(pcm[i : i + step]).tobytes(),
            sample_rate=rate,
            num_channels=pcm.shape[1],
            context_id=context,
        )
        for i in range(0, len(pcm), step)
    ]
    text = TTSTextFrame(text="hello", text_type="word", context_id=context)
    return [TTSStartedFrame(context_id=context), *audio, text, TTSStoppedFrame(context_id=context)]


def run_pipecat(processor, transport, frames):
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.tests.utils import SleepFrame, run_test

    stages = [s for s in (processor, transport) if s is not None]
    frames = [*frames, SleepFrame(0.3)]
    return asyncio.run(run_test(Pipeline(stages), frames_to_send=frames, start_timeout=60))


def flow(frames) -> list[str]:
    """The frame types that pass the transport, images and periodic BotSpeakingFrames aside."""
    from pipecat.frames.frames import BotSpeakingFrame, OutputImageRawFrame

    skip = (OutputImageRawFrame, BotSpeakingFrame)
    return [type(f).__name__ for f in frames if not isinstance(f, skip)]


@pytest.mark.parametrize("realtime", [True, False])
def test_pipecat_speaking_frames_flow_as_without_the_processor(pipeline, source, realtime):
    pytest.importorskip("pipecat")
    from pipecat.frames.frames import BotStartedSpeakingFrame, BotStoppedSpeakingFrame

    from lipforcing.streaming.integrations.pipecat import LipSyncProcessor

    rate = 24_000
    pcm = int16(speech_like(1.0, rate=rate, seed=5))
    size = source.frame_size
    control = recording_transport(size, rate, 1)
    down0, up0 = run_pipecat(None, control, tts_frames(pcm, rate))
    out = recording_transport(size, rate, 1)
    processor = LipSyncProcessor(pipeline, source, realtime=realtime, warmup=realtime)
    down, up = run_pipecat(processor, out, tts_frames(pcm, rate))

    assert flow(down) == flow(down0)  # same frames, same order (TTSStopped after the audio)
    assert flow(up) == flow(up0)
    assert flow(up).count(BotStartedSpeakingFrame.__name__) == 1
    assert flow(up).count(BotStoppedSpeakingFrame.__name__) == 1
    assert b"".join(out.audio) == b"".join(control.audio)  # the input audio, bit for bit
    assert b"".join(out.audio)[: pcm.nbytes] == pcm.tobytes()
    assert out.images > 0 and control.images == 0


def test_pipecat_stereo_48k_is_passed_through_bit_for_bit(pipeline, source):
    pytest.importorskip("pipecat")
    from pipecat.frames.frames import TTSAudioRawFrame

    from lipforcing.streaming.integrations.pipecat import LipSyncProcessor

    rate = 48_000
    pcm = int16(speech_like(0.6, rate=rate, seed=6), channels=2)
    out = recording_transport(source.frame_size, rate, 2)
    processor = LipSyncProcessor(pipeline, source, realtime=False, warmup=False)
    run_pipecat(processor, out, tts_frames(pcm, rate))
    assert b"".join(out.audio)[: pcm.nbytes] == pcm.tobytes()
    # what the processor itself emits (the transport re-chunks): same type, context and format
    processor = LipSyncProcessor(pipeline, source, realtime=False, warmup=False)
    down, _ = run_pipecat(processor, None, tts_frames(pcm, rate))
    tts = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert {(f.sample_rate, f.num_channels, f.context_id) for f in tts} == {(rate, 2, "ctx-1")}
    assert b"".join(f.audio for f in tts) == pcm.tobytes()


def test_pipecat_interruption(pipeline, source):
    pytest.importorskip("pipecat")
    from pipecat.frames.frames import (
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        InterruptionFrame,
    )
    from pipecat.tests.utils import SleepFrame

    from lipforcing.streaming.integrations.pipecat import LipSyncProcessor

    rate = 24_000
    first = int16(speech_like(3.0, rate=rate, seed=7))
    second = int16(speech_like(0.5, rate=rate, seed=8))
    frames = [
        *tts_frames(first, rate, "ctx-1")[:-2],  # no end: the user barges in
        SleepFrame(1.5),
        InterruptionFrame(),
        *tts_frames(second, rate, "ctx-2"),
    ]
    control = recording_transport(source.frame_size, rate, 1)
    down0, up0 = run_pipecat(None, control, frames)
    out = recording_transport(source.frame_size, rate, 1)
    processor = LipSyncProcessor(pipeline, source, realtime=True, warmup=False)
    down, up = run_pipecat(processor, out, frames)

    for name in (BotStartedSpeakingFrame.__name__, BotStoppedSpeakingFrame.__name__):
        assert flow(up).count(name) == flow(up0).count(name) == 2
    played = b"".join(out.audio)
    assert len(played) < first.nbytes  # cut by the interruption
    at = played.find(second.tobytes())  # the next utterance plays in full, last
    assert at > 0 and not any(played[at + second.nbytes :])  # then the final chunk's padding
    assert played[:at] == first.tobytes()[:at]  # before it: the start of the first, bit for bit
    assert flow(down)[-1] == "TTSStoppedFrame" == flow(down0)[-1]


def test_livekit_avatar_worker_accepts_the_dispatch_the_agent_makes():
    """The dispatch LipSyncAvatar sends is accepted under the identity the agent waits for,
    publishing on the agent's behalf (a real JobRequest, its accept callback recorded)."""
    pytest.importorskip("livekit.agents")
    from livekit.agents import JobRequest
    from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
    from livekit.protocol import agent

    from lipforcing.streaming.integrations.livekit import LipSyncAvatar, accept_avatar_job

    avatar = LipSyncAvatar(avatar_identity="face-2", dispatch=False)
    dispatch = avatar.dispatch_request("room-1", "agent-7")
    assert dispatch.agent_name == "lipforcing-avatar" and dispatch.room == "room-1"
    accepted = []

    async def on_accept(arguments) -> None:
        accepted.append(arguments)

    async def on_reject(terminate: bool) -> None:
        raise AssertionError("rejected")

    job = agent.Job(id="J1", metadata=dispatch.metadata)
    asyncio.run(accept_avatar_job(JobRequest(job=job, on_reject=on_reject, on_accept=on_accept)))
    (args,) = accepted
    assert args.identity == avatar.avatar_identity == "face-2"
    assert args.attributes == {ATTRIBUTE_PUBLISH_ON_BEHALF: "agent-7"}
