"""Many streams on one engine: a stream's frames are the same alone and batched with others,
whoever joins or leaves (bitwise, CPU)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from streaming_inputs import face_frames, speech_like
from test_engine_options import PRESET

from lipforcing.streaming.engine import ChunkEngine, ChunkRequest
from lipforcing.streaming.options import ExecutionOptions, restore_torch_threads
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.source import Source

# stream -> (source seed, noise seed, audio seed, first step, last step exclusive)
PLAN = {"a": (0, 0, 1, 0, 6), "b": (1, 1, 2, 0, 3), "c": (0, 2, 3, 2, 6), "d": (1, 3, 4, 4, 6)}


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    pipe = Pipeline.random(PRESET, seed=0)
    sources = {}
    for k in (0, 1):
        frames, marks = face_frames(count=10 + 5 * k, seed=k)
        sources[k] = Source.from_frames(frames, PRESET.media, landmarks=marks)
    return pipe, sources


class Feed:
    """One stream's audio, chunk after chunk."""

    def __init__(self, engine, source, seed, audio_seed):
        self.stream = engine.open(source, seed=seed)
        self.audio, self.pos, self.frames = speech_like(4.0, seed=audio_seed), 0, []

    def request(self) -> ChunkRequest:
        s, pos = self.stream, self.pos
        need = s.next_samples()
        self.pos += need
        look = self.audio[pos + need : pos + need + s.lookahead_samples]
        return ChunkRequest(s, self.audio[pos : pos + need], look)


def alone(pipe, sources, name):
    src, seed, audio_seed, first, last = PLAN[name]
    engine = ChunkEngine(pipe)
    feed = Feed(engine, sources[src], seed, audio_seed)
    for _ in range(first, last):
        feed.frames.append(engine.step_many([feed.request()])[0].frames)
    engine.flush([feed.stream])
    return feed


def batched(engine, sources):
    """Every stream of PLAN through ``engine``, joining and leaving as planned."""
    feeds, groups = {}, []
    for step in range(6):
        for name, (src, seed, audio_seed, first, _) in PLAN.items():
            if step == first:
                feeds[name] = Feed(engine, sources[src], seed, audio_seed)
        active = [n for n, p in PLAN.items() if p[3] <= step < p[4]]
        groups.append(len({feeds[n].stream.cache.frames for n in active}))
        chunks = engine.step_many([feeds[n].request() for n in active])
        for name, chunk in zip(active, chunks):
            feeds[name].frames.append(chunk.frames)
    engine.flush([f.stream for f in feeds.values()])
    return feeds, groups


def assert_alone_frames(feeds, pipe, sources) -> None:
    """Every batched stream's frames and K/V cache equal that stream's run alone on ``pipe``."""
    for name, feed in feeds.items():
        ref = alone(pipe, sources, name)
        assert len(feed.frames) == len(ref.frames)
        for got, want in zip(feed.frames, ref.frames):
            assert np.array_equal(got, want), name
        assert torch.equal(feed.stream.cache.k, ref.stream.cache.k), name
        assert torch.equal(feed.stream.cache.v, ref.stream.cache.v), name


def test_frames_are_identical_alone_and_batched(setup):
    pipe, sources = setup
    feeds, groups = batched(ChunkEngine(pipe), sources)
    assert max(groups) == 3  # steady, empty and one-chunk caches in one step
    assert_alone_frames(feeds, pipe, sources)


def test_a_stream_takes_one_chunk_per_step(setup):
    pipe, sources = setup
    engine = ChunkEngine(pipe)
    feed = Feed(engine, sources[0], 0, 1)
    r = feed.request()
    with pytest.raises(ValueError, match="one chunk per step"):
        engine.step_many([r, r])


def test_stream_threads_give_each_stream_its_plain_frames(setup):
    """stream_threads=2: a step's streams are dealt into two parts stepped at once on two
    threads, torch at one intra-op thread; every stream's frames and cache are bitwise its
    own on the plain path alone (at one torch thread)."""
    _, sources = setup
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        pipe = Pipeline.random(PRESET, seed=0, options=ExecutionOptions(stream_threads=2))
        assert torch.get_num_threads() == 1 and pipe.options.stream_threads == 2
        engine = ChunkEngine(pipe)
        ran_on = set()
        step_part = engine._step_part

        def recorded(requests):
            ran_on.add(threading.current_thread().name)
            return step_part(requests)

        engine._step_part = recorded
        feeds, _ = batched(engine, sources)
        assert len(ran_on) == 2 and all(n.startswith("lipsync-part") for n in ran_on)
        plain = Pipeline.random(PRESET, seed=0, options=ExecutionOptions.plain())
        assert_alone_frames(feeds, plain, sources)
    finally:
        restore_torch_threads()
        assert torch.get_num_threads() == 2
        torch.set_num_threads(threads)
