"""The streaming engine: streaming == offline, chunk layout, audio context, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from streaming_inputs import face_frames, speech_like

from lipforcing.errors import MediaError, UserError
from lipforcing.streaming.engine import ChunkEngine
from lipforcing.streaming.offline import lipsync_offline
from lipforcing.streaming.session import StreamSession
from lipforcing.streaming.source import Source, pingpong_index

SECONDS = 1.9  # 48 frames: a 9-frame chunk and four 12-frame chunks, the source (20) loops


def test_pingpong_index_plays_forward_then_backward():
    want = [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2]
    assert [pingpong_index(n, 4) for n in range(11)] == want
    assert pingpong_index(np.arange(11), 4).tolist() == want
    assert pingpong_index(np.arange(5), 1).tolist() == [0] * 5


def manual_chunks(pipeline, source, audio, seed):
    """Oracle: step the engine by hand with slices of the whole clip's audio."""
    engine = ChunkEngine(pipeline)
    stream = engine.open(source, seed=seed)
    frames, pos = [], 0
    while pos < len(audio):
        need = stream.next_samples()
        chunk_audio = np.zeros(need, np.float32)
        piece = audio[pos : pos + need]
        chunk_audio[: len(piece)] = piece
        look = audio[pos + need : pos + need + stream.lookahead_samples]
        frames.append(engine.step(stream, chunk_audio, look).frames)
        pos += need
    return np.concatenate(frames)


def test_streaming_equals_offline(pipeline, source):
    audio = speech_like(SECONDS)
    offline = lipsync_offline(pipeline, source, audio, seed=3)
    n = math.ceil(len(audio) / 640)
    assert offline.frames.shape == (n, *source.frames.shape[1:])

    # random-sized pushes, as int16 bytes (the audio is on int16 steps, so values are equal)
    rng = np.random.default_rng(1)
    session = StreamSession(pipeline, source, seed=3)
    pcm = np.round(audio * 32768).astype("<i2")
    pos = 0
    while pos < len(pcm):
        k = int(rng.integers(1, 5000))
        session.push_audio(pcm[pos : pos + k].tobytes())
        pos += k
    session.close()
    streamed = [f for f in session.frames()][:n]
    assert len(streamed) == n
    assert all(np.array_equal(f.image, o) for f, o in zip(streamed, offline.frames))
    played = np.concatenate([f.audio for f in streamed])
    assert np.array_equal(played[: len(audio)], audio) and not played[len(audio) :].any()

    manual = manual_chunks(pipeline, source, audio, seed=3)[:n]
    assert np.array_equal(manual, offline.frames)


def test_output_is_causal_and_follows_the_audio(pipeline, source):
    a = speech_like(1.9, seed=7)
    b = a.copy()
    b[16_000:] = speech_like(0.9, seed=8)[: len(a) - 16_000]  # differs from frame 25 on
    fa = lipsync_offline(pipeline, source, a, seed=0).frames
    fb = lipsync_offline(pipeline, source, b, seed=0).frames
    # chunks cover frames [0, 9), [9, 21), [21, 33), ...; [9, 21) reads audio up to frame 24
    assert np.array_equal(fa[:21], fb[:21])
    assert not np.array_equal(fa[21:33], fb[21:33])


def test_chunk_layout_and_source_order(pipeline, source):
    audio = speech_like(SECONDS, seed=2)
    session = StreamSession(pipeline, source, seed=0)
    session.push_audio(audio)
    session.close()
    frames = list(session.frames())
    sizes = np.diff([0, *np.flatnonzero(np.diff([f.index for f in frames]) != 1) + 1])
    assert session.stats.chunks == 1 + math.ceil((len(frames) - 9) / 12)
    assert len(frames) == 9 + 12 * (session.stats.chunks - 1) and sizes.size == 0
    assert [f.source_index for f in frames] == source.indices(0, len(frames)).tolist()
    speech = [f.speech for f in frames]
    assert sum(speech) == math.ceil(len(audio) / 640) and speech[: sum(speech)] == [True] * sum(
        speech
    )
    assert [f.segment_end for f in frames].index(True) == sum(speech) - 1
    # frames keep the source's frame size; off the mouth they are the source itself
    assert frames[0].image.shape == source.frames[0].shape
    top_rows = slice(0, 40)
    same = [
        np.array_equal(f.image[top_rows], source.frames[f.source_index][top_rows]) for f in frames
    ]
    assert all(same)


def test_windowed_features_match_whole_clip(pipeline, source):
    from lipforcing.media.audio import audio_features

    audio = speech_like(3.0, seed=4)
    t = len(audio) // 640
    whole = np.asarray(audio_features(audio, pipeline.preset.audio, t))
    engine = ChunkEngine(pipeline)
    stream = engine.open(source)
    m = stream.audio_margin
    got, pos = [], 0
    while pos + stream.next_samples() <= len(audio):
        need = stream.next_samples()
        look = audio[pos + need : pos + need + stream.lookahead_samples]
        got.append(engine._features(stream, audio[pos : pos + need], look, need // 640)[0].numpy())
        stream.history = np.concatenate([stream.history, audio[pos : pos + need]])[
            -len(stream.history) :
        ]
        stream.frames_done += need // 640
        pos += need
    got = np.concatenate(got)
    inner = slice(m, len(got) - m)
    np.testing.assert_allclose(got[inner], whole[: len(got)][inner], rtol=1e-4, atol=1e-4)


def test_seed_determines_output(pipeline, source):
    audio = speech_like(0.36)
    a = lipsync_offline(pipeline, source, audio, seed=5).frames
    b = lipsync_offline(pipeline, source, audio, seed=5).frames
    c = lipsync_offline(pipeline, source, audio, seed=6).frames
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_still_image_source(pipeline, tmp_path):
    frames, marks = face_frames(count=1)
    still = Source.from_frames(frames, pipeline.preset.media, landmarks=marks)
    out = lipsync_offline(pipeline, still, speech_like(0.5)).frames
    assert out.shape == (13, *frames.shape[1:])
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png")
    with pytest.raises(MediaError, match="cannot read image"):
        Source.from_file(path, pipeline.preset.media)
    with pytest.raises(MediaError, match="no such file"):
        Source.from_file(tmp_path / "missing.mp4", pipeline.preset.media)


def test_bad_audio_is_a_user_error(pipeline, source):
    session = StreamSession(pipeline, source)
    with pytest.raises(UserError, match="even number of bytes"):
        session.push_audio(b"\x00\x01\x02")
    with pytest.raises(UserError, match="NaN"):
        session.push_audio(np.array([0.0, np.nan], np.float32))
    with pytest.raises(UserError, match="sample rate"):
        session.push_audio(np.zeros(10, np.float32), sample_rate=100)
    with pytest.raises(MediaError, match="empty"):
        lipsync_offline(pipeline, source, np.zeros(0, np.float32))
    session.stop()


def test_other_rates_are_resampled_like_one_shot(pipeline, source):
    import soxr

    x = speech_like(1.0, rate=48_000)
    session = StreamSession(pipeline, source)
    rng = np.random.default_rng(0)
    pos = 0
    while pos < len(x):
        k = int(rng.integers(100, 3000))
        session.push_audio(x[pos : pos + k], sample_rate=48_000)
        pos += k
    session.end_segment()
    got = session._queue.peek(0, len(session._queue))
    want = soxr.resample(x, 48_000, 16_000)
    assert abs(len(got) - len(want)) <= 1
    k = min(len(got), len(want))
    np.testing.assert_allclose(got[:k], want[:k], atol=2e-3)
    session.stop()
