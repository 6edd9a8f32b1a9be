"""The engine with the release's inputs: a text context whose cross-attention keys/values are
computed once per stream (identical frames), the reference sequence from the same source
frames, and whole-clip features when the offline path supplies them."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from streaming_inputs import face_frames, speech_like

from lipforcing.config import tiny
from lipforcing.models.text import Context
from lipforcing.streaming.engine import ChunkEngine
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.source import Source


def text_pipeline(reference: str = "half_period", options=None) -> Pipeline:
    p = tiny()
    model = dataclasses.replace(p.model, use_text_context=True, text_len=6)
    media = dataclasses.replace(p.media, reference=reference)
    preset = dataclasses.replace(p, model=model, media=media)
    pipe = Pipeline.random(preset, seed=0, options=options)
    g = torch.Generator().manual_seed(1)
    pipe.context = Context(torch.randn(1, 6, model.text_dim, generator=g), None, "test")
    return pipe


def run(pipe, chunks=3, net=None, before_chunk=None, projected=False):
    """Frames of one stream; ``projected``: the plain path, the context projected by the model
    on every call (the engine never precomputes its keys/values)."""
    frames, marks = face_frames()
    source = Source.from_frames(frames, pipe.preset.media, landmarks=marks, name="drawn")
    engine = ChunkEngine(pipe)
    if net is not None:
        engine.net = net(pipe.model)
    if projected:
        engine._context_kv = lambda context: None
    stream = engine.open(source, seed=2)
    audio = speech_like(3.0)
    out, pos = [], 0
    for i in range(chunks):
        if before_chunk is not None:
            before_chunk(i, stream)
        need = stream.next_samples()
        out.append(engine.step(stream, audio[pos : pos + need]).frames)
        pos += need
    return np.concatenate(out), stream


def test_context_kv_once_per_stream_gives_identical_frames():
    pipe = text_pipeline()
    engine = ChunkEngine(pipe)
    frames, marks = face_frames()
    source = Source.from_frames(frames, pipe.preset.media, landmarks=marks, name="drawn")
    assert engine.open(source).context_kv is None  # opening only allocates
    fast, stream = run(pipe)
    assert stream.context_kv is not None and len(stream.context_kv) == pipe.preset.model.num_layers
    slow, _ = run(pipe, projected=True)
    assert np.array_equal(fast, slow)


STEADY = 5  # chunks: the cache is steady (fixed shapes, graph recordings) from the fourth


def test_kv_shortcut_and_graph_replays_read_the_streams_context_kv():
    """The KV-only write (``kv_shortcut``, ``LipSyncDiT.write_kv``) and the CUDA-graph runner's
    replays (emulated on the CPU) with the stream's precomputed keys/values give the plain
    path's frames bit for bit (full KV pass, context projected on every call)."""
    from lipforcing.streaming.accel import CudaGraphRunner
    from lipforcing.streaming.options import ExecutionOptions

    plain = text_pipeline(options=ExecutionOptions.plain())
    slow, _ = run(plain, chunks=STEADY, projected=True)
    pipe = text_pipeline()  # the defaults: kv_shortcut on
    assert pipe.options.kv_shortcut
    fast, _ = run(pipe, chunks=STEADY)
    assert np.array_equal(fast, slow)
    runners = []

    def graphed(model):
        runners.append(CudaGraphRunner(model, emulate=True))
        return runners[0]

    replayed, _ = run(pipe, chunks=STEADY, net=graphed)
    assert runners[0].recordings and np.array_equal(replayed, slow)


def test_graph_replays_read_the_current_context_kv_not_the_recorded_one():
    """A replay reads the call's keys/values (static inputs), as the eager model does: the
    context switched on a steady cache changes the graphed stream's frames exactly as the
    eager one's."""
    from lipforcing.streaming.accel import CudaGraphRunner

    pipe = text_pipeline()
    g = torch.Generator().manual_seed(5)
    other = pipe.model.context_kv(torch.randn(1, 6, pipe.preset.model.text_dim, generator=g))

    def switch(i, stream):
        if i == STEADY - 1:  # after the first steady (recorded) chunk
            stream.context_kv = other

    eager, _ = run(pipe, chunks=STEADY, before_chunk=switch)
    runners = []

    def graphed(model):
        runners.append(CudaGraphRunner(model, emulate=True))
        return runners[0]

    replayed, _ = run(pipe, chunks=STEADY, net=graphed, before_chunk=switch)
    unswitched, _ = run(pipe, chunks=STEADY)
    assert runners[0].recordings and not np.array_equal(eager, unswitched)
    assert np.array_equal(replayed, eager)


def test_reference_sequence_from_the_same_frames():
    """The release's reference sequence = the unmasked latents of the chunk's own frames."""
    seen = []
    pipe = text_pipeline("same_frames")
    engine = ChunkEngine(pipe)
    original = engine._encode

    def spy(s, idx):
        masked, ref_seq = original(s, idx)
        seen.append((idx.copy(), ref_seq))
        return masked, ref_seq

    engine._encode = spy
    frames, marks = face_frames()
    source = Source.from_frames(frames, pipe.preset.media, landmarks=marks, name="drawn")
    stream = engine.open(source, seed=2)
    engine.step(stream, np.zeros(stream.next_samples(), np.float32))
    idx, ref_seq = seen[0]
    crops = torch.from_numpy(source.crops[idx]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    assert torch.allclose(ref_seq, pipe.codec.encode(crops), atol=1e-5)
    half, _ = run(text_pipeline("half_period"), chunks=1)
    same, _ = run(pipe, chunks=1)
    assert not np.array_equal(half, same)


def test_precomputed_features_are_sliced_by_frame():
    pipe = text_pipeline()
    feats = np.random.default_rng(0).standard_normal((30, pipe.preset.model.audio_feature_dim))
    feats = feats.astype(np.float32)
    engine = ChunkEngine(pipe)
    frames, marks = face_frames()
    source = Source.from_frames(frames, pipe.preset.media, landmarks=marks, name="drawn")
    stream = engine.open(source)
    stream.features = feats
    stream.frames_done = 21
    got = engine._features(stream, np.zeros(12 * 640, np.float32), None, 12)[0].numpy()
    assert np.array_equal(got[:9], feats[21:30]) and not got[9:].any()


def test_paste_modes_reach_the_engine_and_leave_generation_alone():
    """``MediaConfig.paste``: the engine pastes each crop as the library's paste_back does for
    that mode; the generated crops are the same in both modes (paste-back is after
    generation), the mouth paste keeps the frame above the mouth region, the whole-crop paste
    does not; Pipeline.load(paste=) sets it, an unknown mode is one UserError."""
    import pytest

    from lipforcing.errors import UserError
    from lipforcing.media.composite import paste_back
    from lipforcing.streaming.pipeline import shipped_checkpoint

    base = tiny()
    frames, marks = face_frames()
    chunks = {}
    for mode in ("mouth", "crop"):
        preset = dataclasses.replace(base, media=dataclasses.replace(base.media, paste=mode))
        pipe = Pipeline.random(preset, seed=0)
        source = Source.from_frames(frames, preset.media, landmarks=marks, name="drawn")
        engine = ChunkEngine(pipe)
        stream = engine.open(source, seed=2)
        chunk = engine.step(stream, speech_like(1.0)[: stream.next_samples()])
        for k, i in enumerate(chunk.source_index):
            want = paste_back(
                source.frames[i],
                chunk.crops[k],
                source.transforms[i],
                preset.media,
                float(source.paste_weights[i]),
            )
            assert np.array_equal(chunk.frames[k], want), (mode, k)
        chunks[mode] = (chunk, source)
    (mouth, source), (whole, _) = chunks["mouth"], chunks["crop"]
    assert np.array_equal(mouth.crops, whole.crops)
    top = frames.shape[1] // 4  # the crop's upper rows land above this line (drawn face)
    i = mouth.source_index
    assert np.array_equal(mouth.frames[:, :top], source.frames[i][:, :top])
    assert not np.array_equal(whole.frames, mouth.frames)
    ckpt = shipped_checkpoint()
    assert Pipeline.load(ckpt, paste="crop").preset.media.paste == "crop"
    with pytest.raises(UserError, match="--paste"):
        Pipeline.load(ckpt, paste="face")
