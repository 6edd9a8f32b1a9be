"""Sessions sharing one scheduler (what serve --max-sessions runs): each session's frames are
the ones it gets alone, chunks of several sessions are stepped together, sessions come and go."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from streaming_inputs import face_frames, speech_like
from test_engine_options import PRESET

from lipforcing.streaming.offline import lipsync_offline
from lipforcing.streaming.options import ExecutionOptions, restore_torch_threads
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.scheduler import Scheduler
from lipforcing.streaming.session import StreamSession
from lipforcing.streaming.source import Source


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    pipe = Pipeline.random(PRESET, seed=0)
    sources = []
    for k in range(3):
        frames, marks = face_frames(count=8 + 4 * k, seed=k)
        sources.append(Source.from_frames(frames, PRESET.media, landmarks=marks))
    return pipe, sources


def _drain(session, out, key):
    out[key] = np.stack([f.image for f in session.frames()])


def test_shared_scheduler_gives_each_session_its_alone_frames(setup):
    pipe, sources = setup
    three_sessions(pipe, pipe, sources)


def test_stream_threads_give_each_session_its_alone_frames(setup):
    """serve --stream-threads 2: the scheduler's steps run in two parts at once; every
    session's frames are still its alone frames on the default path (one torch thread)."""
    pipe, sources = setup
    threads = torch.get_num_threads()
    try:
        split = Pipeline.random(PRESET, seed=0, options=ExecutionOptions(stream_threads=2))
        three_sessions(split, pipe, sources)
    finally:
        restore_torch_threads()
        torch.set_num_threads(threads)


def three_sessions(pipe, reference, sources):
    """Three sessions on one scheduler of ``pipe``; each one's frames = ``reference`` alone."""
    audios = [speech_like(1.0 + 0.4 * k, seed=k) for k in range(3)]
    scheduler = Scheduler(pipe)
    try:
        sessions = [
            StreamSession(pipe, src, seed=k, scheduler=scheduler) for k, src in enumerate(sources)
        ]
        for s, a in zip(sessions, audios):
            s.push_audio(a)
            s.close()
        out: dict = {}
        threads = [
            threading.Thread(target=_drain, args=(s, out, k)) for k, s in enumerate(sessions)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert max(scheduler.batch_sizes) == 3  # chunks of all three stepped together
        assert scheduler.sessions == 0  # finished sessions left
        for k, (src, a) in enumerate(zip(sources, audios)):
            alone = lipsync_offline(reference, src, a, seed=k).frames
            assert np.array_equal(out[k][: len(alone)], alone), k
    finally:
        scheduler.close()


def test_a_session_joining_late_and_one_leaving_early_disturb_nobody(setup):
    pipe, sources = setup
    a, b = speech_like(1.5, seed=5), speech_like(1.5, seed=6)
    scheduler = Scheduler(pipe)
    try:
        first = StreamSession(pipe, sources[0], seed=1, scheduler=scheduler)
        quitter = StreamSession(pipe, sources[1], seed=2, scheduler=scheduler)
        first.push_audio(a[:10000])  # the first chunk and its right context
        quitter.push_audio(b)
        got = []
        frames = first.frames()
        for _ in range(9):  # the first chunk, generated beside the quitter's
            got.append(next(frames).image)
        quitter.stop()  # leaves mid-stream
        late = StreamSession(pipe, sources[2], seed=3, scheduler=scheduler)
        late.push_audio(b)
        late.close()
        out: dict = {}
        t = threading.Thread(target=_drain, args=(late, out, "late"))
        t.start()
        first.push_audio(a[10000:])
        first.close()
        got += [f.image for f in frames]
        t.join(timeout=300)
        alone = lipsync_offline(pipe, sources[0], a, seed=1).frames
        assert np.array_equal(np.stack(got)[: len(alone)], alone)
        alone = lipsync_offline(pipe, sources[2], b, seed=3).frames
        assert np.array_equal(out["late"][: len(alone)], alone)
    finally:
        scheduler.close()


def test_a_failing_step_reaches_every_session_in_it(setup, monkeypatch):
    pipe, sources = setup
    scheduler = Scheduler(pipe)
    try:
        sessions = [StreamSession(pipe, src, scheduler=scheduler) for src in sources[:2]]

        def broken(requests):
            raise RuntimeError("device lost")

        monkeypatch.setattr(scheduler.engine, "step_many", broken)
        for s in sessions:
            s.push_audio(speech_like(0.5))
            s.close()
        for s in sessions:
            with pytest.raises(RuntimeError, match="device lost"):
                list(s.frames())
    finally:
        scheduler.close()
