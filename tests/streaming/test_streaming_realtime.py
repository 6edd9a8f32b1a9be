"""Realtime sessions: idle frames before speech, paced output, interruption, A/V pairing."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from streaming_inputs import speech_like

from lipforcing.streaming.session import StreamSession


def take(it, n):
    return [next(it) for _ in range(n)]


def test_idle_speech_and_clear(pipeline, source):
    session = StreamSession(pipeline, source, seed=0, realtime=True)
    it = session.frames()
    t0 = time.perf_counter()
    idle = take(it, 20)
    elapsed = time.perf_counter() - t0
    # silence: idle frames with silent audio while the source keeps playing (ping-pong)
    assert not any(f.speech for f in idle)
    assert all(f.audio.shape == (640,) and not f.audio.any() for f in idle)
    assert [f.source_index for f in idle] == source.indices(idle[0].index, 20).tolist()
    # paced: 20 frames take about 19 frame periods once the first is out (loose: shared CPU)
    assert elapsed > 0.6

    audio = speech_like(1.0)
    session.push_audio(audio)
    session.end_segment()
    frames = take(it, 60)
    speech = [f for f in frames if f.speech]
    assert len(speech) == 25  # ceil(16000 / 640)
    played = np.concatenate([f.audio for f in speech])
    assert np.array_equal(played[: len(audio)], audio)  # the audio played is the audio pushed
    assert sum(f.segment_end for f in frames) == 1 and speech[-1].segment_end
    assert session.stats.ttff_s is not None and session.stats.ttff_s < 5.0

    session.push_audio(speech_like(3.0, seed=1))
    more = take(it, 5)
    session.clear()
    assert session.pending_seconds == 0
    after = take(it, 40)
    assert sum(f.speech for f in after[15:]) == 0  # at most a lead's worth was already out
    ts = [f.timestamp for f in idle + frames + more + after]
    assert np.allclose(np.diff(ts), 1 / 25)
    session.stop()


def test_async_iterator_matches_sync_iterator(pipeline, source):
    audio = speech_like(0.9, seed=3)

    def sync_run():
        s = StreamSession(pipeline, source, seed=1)
        s.push_audio(audio)
        s.close()
        return [f.image for f in s.frames()]

    async def async_run():
        s = StreamSession(pipeline, source, seed=1)
        s.push_audio(audio)
        s.close()
        return [f.image async for f in s.aframes()]

    a, b = sync_run(), asyncio.run(async_run())
    assert len(a) == len(b) == 33
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("wait", ["none", "unread", "read"])
def test_segment_end_after_the_queue_ran_dry_reaches_one_frame(pipeline, source, wait):
    """0.5 s of speech; end_segment() comes only after every sample was taken by a chunk: at
    once (its chunk most likely still generating), 1 s later with no frame read (it waits in
    the output queue), or 2 s of frames later (it was read already). Exactly one frame carries
    the segment end: the utterance's last speech frame, or the next frame read when that one
    was read before end_segment() came."""
    session = StreamSession(pipeline, source, seed=0, realtime=True)
    it = session.frames()
    session.push_audio(speech_like(0.5, seed=2))
    before = take(it, 50) if wait == "read" else []
    while session.pending_seconds or not before:
        before.append(next(it))
    if wait == "unread":
        time.sleep(1.0)
    session.end_segment()
    session.end_segment()  # a second end with nothing new pushed ends nothing
    frames = before + take(it, 40)
    session.stop()
    speech = [k for k, f in enumerate(frames) if f.speech]
    assert len(speech) == 13  # ceil(8000 / 640)
    assert frames[speech[-1]].span[1] == 8000
    ends = [k for k, f in enumerate(frames) if f.segment_end]
    assert ends == [max(speech[-1], len(before))]
