"""Every execution option of the chunk runtime against the plain path (CPU).

The plain path is ``ExecutionOptions.plain()``: KV write before the decode, as a whole forward,
two stream encoders. Exact options must give bitwise the same frames, crops and KV cache;
the others stay within their stated tolerance. Options the CPU cannot run are refused with
one line each (``pipeline.notes``), never silently.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from streaming_inputs import face_frames, speech_like

from lipforcing.config import tiny
from lipforcing.errors import UserError
from lipforcing.streaming import accel
from lipforcing.streaming.engine import ChunkEngine
from lipforcing.streaming.options import (
    ExecutionOptions,
    cpu_threads,
    resolve,
    restore_torch_threads,
)
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.source import Source

CHUNKS = 5  # cache: empty, one chunk, first eviction, then steady


def small_preset():
    """The tiny preset at 2 blocks and 64x64 crops: the same code, a quarter of the time."""
    p = tiny()
    model = dataclasses.replace(p.model, num_layers=2, audio_first_layer=0, audio_layers=1)
    codec = dataclasses.replace(p.codec, image_size=64)
    media = dataclasses.replace(p.media, crop_size=64)
    return dataclasses.replace(p, model=model, codec=codec, media=media)


PRESET = small_preset()


@pytest.fixture(scope="module")
def source():
    frames, marks = face_frames(count=12)
    return Source.from_frames(frames, PRESET.media, landmarks=marks, name="drawn")


def run(
    source, options=None, *, chunks=CHUNKS, seed=0, net=None, dtype=torch.float32, device="cpu"
):
    """Frames, crops and the final KV cache of one stream through a fresh engine."""
    pipe = Pipeline.random(PRESET, seed=0, options=options, dtype=dtype, device=device)
    engine = ChunkEngine(pipe)
    if net is not None:
        engine.net = net(pipe.model)
    stream = engine.open(source, seed=seed)
    audio = speech_like(3.0, seed=seed)
    frames, crops, pos = [], [], 0
    for _ in range(chunks):
        need = stream.next_samples()
        look = audio[pos + need : pos + need + stream.lookahead_samples]
        chunk = engine.step(stream, audio[pos : pos + need], look)
        frames.append(chunk.frames)
        crops.append(chunk.crops)
        pos += need
    engine.flush([stream])
    return np.concatenate(frames), np.concatenate(crops), stream.cache, engine


@pytest.fixture(scope="module")
def plain(source):
    torch.set_num_threads(1)
    return run(source, ExecutionOptions.plain())


def assert_same(a, b):
    frames, crops, cache = a[:3]
    assert np.array_equal(frames, b[0]) and np.array_equal(crops, b[1])
    assert torch.equal(cache.k, b[2].k) and torch.equal(cache.v, b[2].v)
    assert (cache.frames, cache.total_frames) == (b[2].frames, b[2].total_frames)


def test_the_defaults_are_the_exact_options():
    d = ExecutionOptions()
    assert d.kv_after_decode and d.kv_shortcut and d.paired_encode
    assert not (d.compile or d.cuda_graphs or d.two_streams or d.fp8) and d.sdpa == "auto"


def test_defaults_are_bitwise_the_plain_path(source, plain):
    got = run(source)
    assert_same(got, plain)
    assert got[2].total_frames == 3 * CHUNKS and got[2].frames == 4
    assert not got[3].pipeline.notes


@pytest.mark.parametrize("option", ["kv_after_decode", "kv_shortcut", "paired_encode"])
def test_each_exact_option_is_bitwise_the_plain_path(source, plain, option):
    assert_same(run(source, dataclasses.replace(ExecutionOptions.plain(), **{option: True})), plain)


def test_sdpa_backends_agree(source, plain):
    for name in ("math", "flash"):
        frames, crops, cache, _ = run(source, ExecutionOptions(sdpa=name))
        torch.testing.assert_close(cache.k, plain[2].k, atol=1e-5, rtol=1e-5)
        assert np.abs(crops.astype(int) - plain[1].astype(int)).max() <= 1


def test_cuda_graph_logic_emulated(source, plain):
    """Static buffers, cache snapshot/restore and bookkeeping of the graph runner, replayed
    eagerly on the CPU: same outputs, one recording per steady call kind."""
    runners = []

    def graphed(model):
        runners.append(accel.CudaGraphRunner(model, emulate=True))
        return runners[0]

    got = run(source, net=graphed)
    assert_same(got, plain)
    assert sorted(k[0] for k in runners[0].recordings) == ["read", "write_kv"]
    full = run(source, ExecutionOptions(kv_shortcut=False), net=graphed)
    assert_same(full, plain)


def test_bf16_within_bf16_tolerance(source, plain):
    frames, crops, cache, _ = run(source, dtype=torch.bfloat16)
    assert cache.k.dtype == torch.bfloat16
    err = (cache.k.float() - plain[2].k).norm() / plain[2].k.norm()
    assert err < 0.03, err


@pytest.mark.slow
def test_compiled_blocks_close_to_eager(source, plain):
    frames, crops, cache, engine = run(source, ExecutionOptions(compile=True))
    assert engine.pipeline.options.compile and not engine.pipeline.notes
    torch.testing.assert_close(cache.k, plain[2].k, atol=1e-4, rtol=1e-4)


def test_a_failing_compile_falls_back_to_eager_with_one_line(source, plain, monkeypatch):
    def broken(fn, **kwargs):
        def call(*args, **kw):
            raise RuntimeError("inductor: no C++ compiler\nsecond line")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    pipe = Pipeline.random(PRESET, seed=0, options=ExecutionOptions(compile=True))
    engine = ChunkEngine(pipe)
    engine.warmup(source, chunks=1)
    assert not pipe.options.compile and pipe.requested.compile
    (note,) = pipe.notes
    assert note.startswith("compile=on runs as compile=off: torch.compile failed (RuntimeError")
    assert "\n" not in note
    stream = engine.open(source)
    out = engine.step(stream, np.zeros(stream.next_samples(), np.float32))
    assert out.frames.shape[0] == 9


def test_cpu_refuses_gpu_options_with_one_line_each():
    asked = ExecutionOptions(cuda_graphs=True, two_streams=True, fp8=True, sdpa="cudnn")
    r = resolve(asked, "cpu")
    assert r.options == ExecutionOptions()
    assert len(r.notes) == 4 and all("\n" not in n for n in r.notes)
    graphs = next(n for n in r.notes if n.startswith("cuda_graphs"))
    assert graphs == (
        "cuda_graphs=on runs as cuda_graphs=off: CUDA graphs need a CUDA device, this is cpu"
    )
    assert any(n.startswith("sdpa=cudnn runs as sdpa=auto") for n in r.notes)
    pipe = Pipeline.random(PRESET, options=asked)
    assert pipe.requested == asked and pipe.options == r.options and pipe.notes == list(r.notes)


def test_stream_threads_are_refused_off_the_cpu_with_one_line():
    r = resolve(ExecutionOptions(stream_threads=2), "cuda")
    assert r.options.stream_threads == 1
    assert r.notes == (
        "stream_threads=2 runs as stream_threads=1: stream threads share out CPU cores, "
        "this is cuda",
    )
    with pytest.raises(ValueError, match="stream_threads"):
        ExecutionOptions(stream_threads=0)


def test_stream_threads_auto_is_the_cpu_threads_given_and_one_on_cuda():
    threads = torch.get_num_threads()
    auto = ExecutionOptions(stream_threads="auto")
    try:
        torch.set_num_threads(3)
        assert resolve(auto, "cpu").options.stream_threads == 3
        assert resolve(auto, "cuda") == resolve(ExecutionOptions(), "cuda")  # 1, no note
        pipe = Pipeline.random(PRESET, options=auto)
        assert pipe.requested == auto and pipe.options.stream_threads == 3 and not pipe.notes
        assert torch.get_num_threads() == 1  # a core per part
        assert cpu_threads() == 3  # a second pipeline's "auto" still sees the threads given
        assert resolve(auto, "cpu").options.stream_threads == 3
    finally:
        restore_torch_threads()
        torch.set_num_threads(threads)


def test_stream_threads_flag_defaults_auto_on_serve_only():
    import argparse

    from lipforcing.cli import options

    def parsed(argv, **default):
        parser = argparse.ArgumentParser()
        options.add_execution(parser, **default)
        return options.execution_options(parser.parse_args(argv)).stream_threads

    assert parsed([]) == 1 and parsed([], stream_threads="auto") == "auto"
    assert parsed(["--stream-threads", "2"], stream_threads="auto") == 2
    with pytest.raises(UserError, match="stream_threads must be >= 1 or 'auto'"):
        parsed(["--stream-threads", "many"])


def test_fp8_below_sm89_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    r = resolve(ExecutionOptions(fp8=True), "cuda")
    assert not r.options.fp8
    assert r.notes == ("fp8=on runs as fp8=off: FP8 matmuls need sm89 or newer, this GPU is sm80",)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert resolve(ExecutionOptions(fp8=True), "cuda").options.fp8


def test_fp8_linear_matches_its_dequantised_maths():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    fp8 = accel.FP8Linear(lin)
    x = torch.randn(2, 10, 64)
    torch.testing.assert_close(fp8(x), fp8.reference(x), atol=1e-5, rtol=1e-5)
    err = (fp8(x) - lin(x)).norm() / lin(x).norm()
    assert 0 < err < 0.08  # e4m3 keeps 3 mantissa bits


def test_fp8_blocks_close_to_fp32(source, plain):
    """The FP8 path itself runs on the CPU (slowly) when applied by hand: cache within 5%."""
    counted = {}

    def swap(model):
        counted["n"] = accel.fp8_linears(model)
        return model

    frames, crops, cache, _ = run(source, net=swap)
    assert counted["n"] == 2 * 10  # per block: self q,k,v,o; cross q,k,v,o; ffn.0, ffn.2
    err = (cache.k - plain[2].k).norm() / plain[2].k.norm()
    assert 0 < err < 0.05, err
