"""LiveKit and Pipecat integrations against the real packages (skipped when not installed)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from streaming_inputs import speech_like

from lipforcing.streaming.session import StreamSession


def int16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def test_livekit_video_generator(pipeline, source):
    pytest.importorskip("livekit.agents")
    from livekit import rtc
    from livekit.agents.voice.avatar import AudioSegmentEnd

    from lipforcing.streaming.integrations.livekit import LipSyncVideoGenerator

    audio = int16(speech_like(1.0, rate=24_000))

    async def main():
        gen = LipSyncVideoGenerator(StreamSession(pipeline, source, seed=0))
        for i in range(0, len(audio), 240):  # 10 ms frames at 24 kHz, as an agent sends them
            piece = audio[i : i + 240]
            await gen.push_audio(rtc.AudioFrame(piece.tobytes(), 24_000, 1, len(piece)))
        await gen.push_audio(AudioSegmentEnd())
        gen.session.close()
        return [item async for item in gen]

    items = asyncio.run(main())
    kinds = [type(x).__name__ for x in items]
    assert kinds.count("VideoFrame") == kinds.count("AudioFrame") == 33
    assert kinds.count("AudioSegmentEnd") == 1
    end = kinds.index("AudioSegmentEnd")
    assert kinds[end - 2 : end] == ["VideoFrame", "AudioFrame"]
    assert kinds[: end - 2].count("VideoFrame") == 24  # the segment ends on speech frame 25
    video = items[0]
    assert (video.height, video.width) == source.frame_size
    assert video.type == rtc.VideoBufferType.RGBA
    assert all(a.sample_rate == 16_000 and a.samples_per_channel == 640 for a in items[1::2][:5])


def test_livekit_clear_buffer_drops_pending_audio(pipeline, source):
    pytest.importorskip("livekit.agents")
    from livekit import rtc

    from lipforcing.streaming.integrations.livekit import LipSyncVideoGenerator

    gen = LipSyncVideoGenerator(StreamSession(pipeline, source, seed=0))
    pcm = int16(speech_like(2.0))
    asyncio.run(gen.push_audio(rtc.AudioFrame(pcm.tobytes(), 16_000, 1, len(pcm))))
    assert gen.session.pending_seconds == pytest.approx(2.0)
    gen.clear_buffer()
    assert gen.session.pending_seconds == 0
    asyncio.run(gen.aclose())


def test_pipecat_processor(pipeline, source):
    pytest.importorskip("pipecat")
    from pipecat.frames.frames import (
        InterruptionFrame,
        OutputAudioRawFrame,
        OutputImageRawFrame,
        TTSAudioRawFrame,
        TTSStoppedFrame,
    )
    from pipecat.tests.utils import run_test

    from lipforcing.streaming.integrations.pipecat import LipSyncProcessor

    first, second = int16(speech_like(1.0, seed=1)), int16(speech_like(0.5, seed=2))
    tts = [
        TTSAudioRawFrame(audio=first[i : i + 1600].tobytes(), sample_rate=16_000, num_channels=1)
        for i in range(0, len(first), 1600)
    ]
    tail = [TTSAudioRawFrame(audio=second.tobytes(), sample_rate=16_000, num_channels=1)]
    processor = LipSyncProcessor(pipeline, source, realtime=False)
    frames = [*tts, InterruptionFrame(), *tail, TTSStoppedFrame()]
    down, _ = asyncio.run(run_test(processor, frames_to_send=frames))
    images = [f for f in down if isinstance(f, OutputImageRawFrame)]
    audios = [f for f in down if type(f) is OutputAudioRawFrame]
    assert len(images) == len(audios) > 0
    assert images[0].size == source.frame_size[::-1] and images[0].format == "RGB"
    assert any(isinstance(f, TTSStoppedFrame) for f in down)
    assert any(isinstance(f, InterruptionFrame) for f in down)
    assert not any(isinstance(f, TTSAudioRawFrame) for f in down)  # consumed, replaced
    played = np.concatenate([np.frombuffer(a.audio, np.int16) for a in audios])
    # whatever the interruption cut, the utterance after it plays in full, last
    assert second[-1] != 0
    end = np.flatnonzero(played)[-1] + 1
    expected = second.astype(np.float64) * 32767 / 32768
    np.testing.assert_allclose(played[end - len(second) : end], expected, atol=1.01)
