"""Every speed-up computes what the plain float32 path computes (CPU)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from bench_helpers import SMALL, stream_outputs

from lipforcing.bench import optimize
from lipforcing.bench.harness import make_setup
from lipforcing.bench.student import StudentStream, student_run_overlapped
from lipforcing.diffusion.causal import generate_chunk
from lipforcing.diffusion.samplers import cpu_noise

CHUNKS = 5  # cache states: empty, one chunk, then steady (full) from chunk 2 on


def _same(a: list[torch.Tensor], b: list[torch.Tensor], atol: float = 0.0, rtol: float = 0.0):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=atol, rtol=rtol)


@pytest.fixture(scope="module")
def reference() -> list[torch.Tensor]:
    """The plain stream: KV write before the decode, eager float32."""
    torch.set_num_threads(1)
    return stream_outputs(CHUNKS, kv_after_decode=False)[0]


def test_harness_stream_is_generate_chunk(reference):
    """The harness's student loop is the causal core: same noise order, same outputs."""
    opts = dataclasses.replace(SMALL, kv_after_decode=False)
    s = make_setup(opts, "block_causal")
    stream = StudentStream(s)
    p, g = s.preset, torch.Generator().manual_seed(opts.seed)
    ref = stream.latents[2][:, :, :1]
    from lipforcing.data.conditions import assemble_cond

    out = []
    with torch.inference_mode():
        for i, n in enumerate(stream.sizes(CHUNKS)):
            cond = assemble_cond(
                masked=stream.latents[0],
                ref_frame=ref,
                ref_seq=stream.latents[1],
                mask=s.mask,
                audio=stream.audio[:, :n],
                pack=p.model.audio_pack_frames,
                audio_packed=i > 0,
            )
            noise = cpu_noise(stream.latents[0].shape, g, stream.latents[0])
            out.append(generate_chunk(s.model, stream.cache, noise, cond, generator=g))
    _same(out, reference)
    assert stream.cache.total_frames == 3 * CHUNKS


def test_kv_write_after_decode_is_exact(reference):
    _same(stream_outputs(CHUNKS, kv_after_decode=True)[0], reference)


def test_kv_write_shortcut_is_exact(reference):
    """Skipping the last block's tail and the head leaves bitwise the same cache entries."""
    out, stream = stream_outputs(CHUNKS, model_fn=optimize.KVWriteShortcut)
    _same(out, reference)
    full = stream_outputs(CHUNKS, kv_after_decode=False)[1].cache
    assert torch.equal(stream.cache.k, full.k) and torch.equal(stream.cache.v, full.v)
    assert (stream.cache.frames, stream.cache.total_frames) == (full.frames, full.total_frames)


def test_overlapped_schedule_is_exact(reference):
    """Codec/DiT lanes (inline on the CPU): encode k+1 before decode k, same outputs."""
    _same(stream_outputs(CHUNKS, runner=student_run_overlapped)[0], reference)


def test_sdpa_backends_agree(reference):
    for name in ("math", "flash"):
        with optimize.sdpa_backend(name):
            out = stream_outputs(CHUNKS, kv_after_decode=False)[0]
        _same(out, reference, atol=1e-5, rtol=1e-5)


def test_cuda_graph_logic_emulated(reference):
    """Static buffers, cache snapshot and bookkeeping of the graph wrapper (replayed eagerly)."""
    wrapped = {}

    def wrap(model):
        wrapped["w"] = optimize.CudaGraphStudent(model, emulate=True)
        return wrapped["w"]

    out, stream = stream_outputs(CHUNKS, model_fn=wrap, kv_after_decode=False)
    _same(out, reference, atol=1e-6, rtol=1e-6)
    assert len(wrapped["w"].recordings) == 2  # one read and one write graph
    assert stream.cache.total_frames == 3 * CHUNKS and stream.cache.frames == 4

    def wrap_shortcut(model):  # the harness's order: graphs around the KV-write shortcut
        return optimize.CudaGraphStudent(optimize.KVWriteShortcut(model), emulate=True)

    _same(stream_outputs(CHUNKS, model_fn=wrap_shortcut)[0], reference, atol=1e-6, rtol=1e-6)


def test_bf16_within_bf16_tolerance(reference):
    out = stream_outputs(CHUNKS, dtype="bf16", kv_after_decode=False)[0]
    for x, y in zip(out, reference):
        assert x.dtype == torch.bfloat16
        err = (x.float() - y).norm() / y.norm()
        assert err < 0.03, err


def test_fp8_linear_matches_its_dequantised_maths():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48)
    fp8 = optimize.FP8Linear(lin)
    x = torch.randn(2, 10, 64)
    torch.testing.assert_close(fp8(x), fp8.reference(x), atol=1e-5, rtol=1e-5)
    err = (fp8(x) - lin(x)).norm() / lin(x).norm()
    assert 0 < err < 0.08  # e4m3 keeps 3 mantissa bits


def test_fp8_model_close_to_fp32(reference):
    counted = {}

    def swap(model):
        counted["n"] = optimize.fp8_linears(model)
        return model

    out = stream_outputs(CHUNKS, model_fn=swap, kv_after_decode=False)[0]
    assert counted["n"] == 2 * 10  # per block: self q,k,v,o; cross q,k,v,o; ffn.0, ffn.2
    for x, y in zip(out, reference):
        assert 0 < (x - y).norm() / y.norm() < 0.01  # x0 is mostly x_t: errors are diluted


def test_fp8_velocity_close_to_fp32():
    """One forward, velocity compared directly (no dilution by x_t)."""
    s = make_setup(SMALL, "bidirectional")
    g = torch.Generator().manual_seed(0)
    x = s.random_latents(3, g)
    from lipforcing.data.conditions import assemble_cond

    cond = assemble_cond(
        masked=s.random_latents(3, g),
        ref_frame=s.random_latents(1, g),
        ref_seq=s.random_latents(3, g),
        mask=s.mask,
        audio=torch.randn(1, 9, s.preset.model.audio_feature_dim, generator=g),
        pack=4,
    )
    t = torch.full((1,), 0.7)
    with torch.no_grad():
        v32 = s.model(x, t, cond)
        optimize.fp8_linears(s.model)
        v8 = s.model(x, t, cond)
    err = (v8 - v32).norm() / v32.norm()
    assert 1e-3 < err < 0.1, err


@pytest.mark.slow
def test_compiled_blocks_equal_eager(reference):
    out = stream_outputs(CHUNKS, model_fn=optimize.compile_blocks, kv_after_decode=False)[0]
    _same(out, reference, atol=1e-5, rtol=1e-5)


def test_timed_model_passes_outputs_through(reference):
    out = stream_outputs(CHUNKS, kv_after_decode=False)[0]
    _same(out, reference)  # student_run always times through TimedModel; determinism check
