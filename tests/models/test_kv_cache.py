"""Cached chunk-by-chunk attention equals one block-causal forward; the cache stays bounded."""

from __future__ import annotations

import dataclasses
import gc
import resource

import torch
from model_helpers import random_cond, randomized, small_config

from lipforcing.config import CausalConfig
from lipforcing.models import KVCache
from lipforcing.models.attention import BlockCausal
from lipforcing.models.sink_window import SinkWindow

HW = (4, 4)


def _cache(cfg, causal, batch=1):
    return KVCache.allocate(cfg, batch, HW, causal)


@torch.no_grad()
def test_cached_writes_equal_block_causal_forward():
    """Per-frame times, 4 chunks, window covering the stream: write-call outputs == full pass."""
    cfg = small_config()
    model = randomized(cfg)
    frames = 12
    cond = random_cond(cfg, frames, HW, batch=2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, frames, *HW, generator=g)
    t = torch.rand(2, frames, generator=g)
    full = model(x, t, cond)
    cache = _cache(cfg, CausalConfig(window_frames=frames), batch=2)
    out = []
    for k in range(4):
        s = slice(3 * k, 3 * k + 3)
        out.append(
            model(x[:, :, s], t[:, s], cond.frames(s.start, s.stop), cache, update_cache=True)
        )
    assert (torch.cat(out, 2) - full).abs().max() <= 1e-5
    assert full.abs().mean() > 0.1  # a non-trivial network


@torch.no_grad()
def test_cached_read_equals_full_pass_on_clean_history():
    """A denoising call on a noisy chunk over a clean cached past == the same full sequence."""
    cfg = small_config()
    model = randomized(cfg, seed=3)
    cond = random_cond(cfg, 9, HW, seed=2)
    g = torch.Generator().manual_seed(4)
    clean, noisy = torch.randn(1, 16, 6, *HW, generator=g), torch.randn(1, 16, 3, *HW, generator=g)
    cache = _cache(cfg, CausalConfig(window_frames=9))
    for k in range(2):
        s = slice(3 * k, 3 * k + 3)
        model(
            clean[:, :, s], torch.zeros(1), cond.frames(s.start, s.stop), cache, update_cache=True
        )
    frames_before = cache.frames
    read = model(noisy, torch.full((1,), 0.77), cond.frames(6, 9), cache)
    assert cache.frames == frames_before  # reading does not commit
    t = torch.tensor([[0.0] * 6 + [0.77] * 3])
    full = model(torch.cat([clean, noisy], 2), t, cond)
    assert (read - full[:, :, 6:]).abs().max() <= 1e-5
    again = model(noisy, torch.full((1,), 0.77), cond.frames(6, 9), cache)
    assert torch.equal(read, again)  # the scratch slots left no trace


@torch.no_grad()
def test_eviction_keeps_sink_and_recent_frames():
    """Entries after eviction are exactly the sink + the most recent window - chunk frames."""
    cfg = small_config(num_layers=1, audio_layers=0, audio_first_layer=0)
    cache = _cache(cfg, CausalConfig())  # sink 1, window 6, chunk 3
    tok = cfg.tokens_per_frame(HW)
    for chunk in range(4):  # frames 3c .. 3c+2, each filled with its frame index
        k = torch.arange(3 * chunk, 3 * chunk + 3).float().repeat_interleave(tok)
        k = k.view(1, -1, 1, 1).expand(1, -1, cfg.num_heads, cfg.head_dim)
        cache.view(0, k, k)
        cache.append(3)
        cache.evict()
    held = cache.k[0, 0, : cache.frames * tok, 0, 0].view(cache.frames, tok)[:, 0]
    assert held.tolist() == [0.0, 9.0, 10.0, 11.0]  # sink frame 0, then the 3 latest
    assert cache.total_frames == 12
    q_pos, k_pos = cache.positions(3)
    assert q_pos.tolist() == [4, 5, 6] and k_pos.tolist() == list(range(7))


@torch.no_grad()
def test_windowed_block_causal_mask_visibility():
    """The windowed mask shows each chunk the sink and the window frames, as the cache does."""
    m = BlockCausal(num_frames=12, tokens_per_frame=1, chunk_frames=3, window=SinkWindow(1, 6, 3))
    vis = m.frame_mask()
    assert vis[9].nonzero().flatten().tolist() == [0, 6, 7, 8, 9, 10, 11]
    assert vis[4].nonzero().flatten().tolist() == [0, 1, 2, 3, 4, 5]
    assert not vis[2, 3]  # causal across chunks


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@torch.no_grad()
def test_memory_flat_over_1000_chunks():
    """Window smaller than the stream: cache bytes fixed, RSS flat, outputs finite."""
    from lipforcing.diffusion.causal import generate_chunk
    from lipforcing.diffusion.samplers import cpu_noise
    from lipforcing.diffusion.schedules import ShiftedGrid

    cfg = small_config(dim=16, ffn_dim=32, num_layers=2, audio_first_layer=0, audio_layers=1)
    model = randomized(cfg)
    causal = CausalConfig(window_frames=6)
    cond = random_cond(cfg, 3, (2, 2))
    cache = KVCache.allocate(cfg, 1, (2, 2), causal)
    nbytes, ptr = cache.nbytes, cache.k.data_ptr()
    g = torch.Generator().manual_seed(0)
    rss = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threading overhead dominates on a busy machine
    try:
        for i in range(1000):
            noise = cpu_noise((1, 16, 3, 2, 2), g, cond.ref)
            x0 = generate_chunk(model, cache, noise, cond, (0, 30), ShiftedGrid(50, 5.0), g)
            assert torch.isfinite(x0).all()
            if i in (100, 999):
                gc.collect()
                rss.append(_rss_mb())
    finally:
        torch.set_num_threads(threads)
    assert cache.frames == causal.sink_frames + causal.window_frames - causal.chunk_frames
    assert cache.total_frames == 3000
    assert cache.nbytes == nbytes and cache.k.data_ptr() == ptr  # never reallocated
    assert rss[1] - rss[0] < 20, rss  # MB; a leak of one chunk per step would show


@torch.no_grad()
def test_windowed_training_pass_equals_cache_beyond_the_window():
    """mask_window = (sink, window): one pass over 6 chunks == cached writes with eviction."""
    cfg = small_config(mask_window=(1, 6))
    model = randomized(cfg, seed=5)
    frames = 18
    cond = random_cond(cfg, frames, HW, seed=6)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 16, frames, *HW, generator=g)
    t = torch.rand(1, frames, generator=g)
    full = model(x, t, cond)
    cache = _cache(cfg, CausalConfig(sink_frames=1, window_frames=6))
    out = []
    for k in range(6):
        s = slice(3 * k, 3 * k + 3)
        out.append(
            model(x[:, :, s], t[:, s], cond.frames(s.start, s.stop), cache, update_cache=True)
        )
    assert cache.total_frames == frames and cache.frames == 4  # evicted along the way
    assert (torch.cat(out, 2) - full).abs().max() <= 1e-5
    plain = dataclasses.replace(cfg, mask_window=None)  # absolute positions, all history
    model.cfg = plain
    assert (model(x, t, cond)[:, :, 9:] - full[:, :, 9:]).abs().max() > 1e-3


def test_cache_allocated_in_inference_mode_works_outside_it():
    cfg = small_config()
    model = randomized(cfg)
    with torch.inference_mode():
        cache = _cache(cfg, CausalConfig())
    cond = random_cond(cfg, 3, HW)
    with torch.no_grad():  # not inference mode: in-place writes must still be allowed
        model(torch.randn(1, 16, 3, *HW), torch.zeros(1), cond, cache, update_cache=True)
    assert cache.frames == 3


@torch.no_grad()
def test_snapshot_and_restore_put_back_everything():
    cfg = small_config()
    model = randomized(cfg)
    cache = _cache(cfg, CausalConfig())
    cond = random_cond(cfg, 3, HW)
    model(torch.randn(1, 16, 3, *HW), torch.zeros(1), cond, cache, update_cache=True)
    saved, counts = cache.snapshot(), cache.snapshot(tensors=False)
    assert counts.k is None and (counts.frames, counts.total_frames) == (3, 3)
    k0 = cache.k.clone()
    model(torch.randn(1, 16, 3, *HW), torch.zeros(1), cond, cache, update_cache=True)
    assert cache.total_frames == 6 and not torch.equal(cache.k, k0)
    cache.restore(saved)
    assert torch.equal(cache.k, k0) and (cache.frames, cache.total_frames) == (3, 3)
    cache.restore(counts)  # bookkeeping only: the tensors stay
    assert torch.equal(cache.k, k0)


def test_one_policy_for_cache_mask_and_windows():
    """The cache's slots after every chunk are SinkWindow.held, which is the mask's past."""
    policy = SinkWindow(1, 6, 3)
    mask = policy.frame_mask(21)
    for start in range(0, 21, 3):
        visible = mask[start].nonzero().flatten().tolist()
        assert visible == [*policy.held(start), *range(start, start + 3)]
    assert policy.held(12) == [0, 9, 10, 11] and policy.held_frames == 4
    held = 0
    for _ in range(5):  # commits of 3 frames: the eviction keeps what held() lists
        held += 3
        held -= policy.evict_count(held)
    assert held == policy.held_frames
    cache = KVCache(torch.zeros(1, 1, 7, 1, 1), torch.zeros(1, 1, 7, 1, 1), 1, policy)
    assert cache.policy is policy and not cache.steady
