"""The causal core: few-step maths over the cache, clean cache writes, Self-Forcing gradients."""

from __future__ import annotations

import pytest
import torch

from lipforcing.config import CausalConfig
from lipforcing.diffusion.causal import generate_chunk, rollout
from lipforcing.diffusion.samplers import cpu_noise, few_step_sample
from lipforcing.diffusion.schedules import ShiftedGrid
from lipforcing.models import KVCache, build_model
from lipforcing.models.conditioning import LipSyncCond
from toy_models import toy_config

HW = (4, 4)
CFG = toy_config(num_layers=3, audio_layers=2)
CAUSAL = CausalConfig()
GRID = ShiftedGrid(50, 5.0)
STEPS = CAUSAL.student_steps


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = build_model(CFG)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return m


def cond_for(frames: int, seed: int = 0) -> LipSyncCond:
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g)

    return LipSyncCond(
        r(1, 16, frames, *HW),
        r(1, 1, frames, *HW),
        r(1, 16, frames, *HW),
        r(1, 16, frames, *HW),
        r(1, 4 * frames, CFG.audio_feature_dim),
    )


def _cache() -> KVCache:
    return KVCache.allocate(CFG, 1, HW, CAUSAL)


@torch.no_grad()
def test_generate_chunk_is_few_step_sample_over_a_read_only_cache(model):
    cond = cond_for(6)
    first, second = cond.frames(0, 3), cond.frames(3, 6)
    a, b = _cache(), _cache()
    noise = cpu_noise((1, 16, 3, *HW), torch.Generator().manual_seed(5), first.ref)
    for cache in (a, b):
        generate_chunk(model, cache, noise, first, STEPS, GRID, torch.Generator().manual_seed(1))
    assert a.frames == b.frames == 3
    ours = generate_chunk(model, a, noise, second, STEPS, GRID, torch.Generator().manual_seed(2))
    ref = few_step_sample(
        lambda x, t, c: model(x, t, c, b),
        noise,
        second,
        grid=GRID,
        steps=(0, 30),
        generator=torch.Generator().manual_seed(2),
    )
    assert torch.equal(ours, ref)
    assert b.frames == 3 and a.frames == 4  # b was only read; a wrote 3 frames, evicted 2


@torch.no_grad()
def test_cache_is_written_from_the_clean_prediction_at_t0(model):
    cond = cond_for(3)
    a, b = _cache(), _cache()
    noise = torch.randn(1, 16, 3, *HW)
    x0 = generate_chunk(model, a, noise, cond, STEPS, GRID, torch.Generator().manual_seed(3))
    model(x0, torch.zeros(1), cond, b, update_cache=True)
    assert torch.equal(a.k[:, :, : 3 * 4], b.k[:, :, : 3 * 4])
    assert torch.equal(a.v[:, :, : 3 * 4], b.v[:, :, : 3 * 4])


@pytest.mark.parametrize("grad_call", [0, 1])
def test_only_the_selected_call_has_gradients(model, grad_call):
    modes = []
    hook = model.register_forward_hook(lambda *_: modes.append(torch.is_grad_enabled()))
    cond = cond_for(3)
    x0 = generate_chunk(
        model,
        _cache(),
        torch.randn(1, 16, 3, *HW),
        cond,
        STEPS,
        GRID,
        torch.Generator().manual_seed(0),
        grad_call=grad_call,
    )
    hook.remove()
    expected = [k == grad_call for k in range(grad_call + 1)] + [False]  # + the cache write
    assert modes == expected
    x0.square().mean().backward()
    assert model.head.head.weight.grad is not None and model.head.head.weight.grad.abs().sum() > 0


@torch.no_grad()
def test_rollout_is_causal_and_seeded(model):
    cond = cond_for(9)
    a = rollout(model, cond, 3, CAUSAL, GRID, torch.Generator().manual_seed(7))
    b = rollout(model, cond, 3, CAUSAL, GRID, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.shape == (1, 16, 9, *HW)
    later = LipSyncCond(cond.ref, cond.mask, cond.masked.clone(), cond.ref_seq, cond.audio.clone())
    later.masked[:, :, 6:] += 1.0
    later.audio[:, 24:] += 1.0
    c = rollout(model, later, 3, CAUSAL, GRID, torch.Generator().manual_seed(7))
    assert torch.equal(a[:, :, :6], c[:, :, :6]) and not torch.equal(a[:, :, 6:], c[:, :, 6:])
    with pytest.raises(ValueError, match="chunks need"):
        rollout(model, cond, 4, CAUSAL, GRID)


@torch.no_grad()
def test_kv_only_write_leaves_bitwise_the_same_cache(model):
    """model.write_kv == the whole t = 0 forward's commit, over empty, partial and full caches."""
    cond = cond_for(15)
    full, short = _cache(), _cache()
    for c in range(5):
        x0 = torch.randn(1, 16, 3, *HW)
        chunk = cond.frames(3 * c, 3 * c + 3)
        model(x0, torch.zeros(1), chunk, full, update_cache=True)
        model.write_kv(x0, torch.zeros(1), chunk, short)
        assert torch.equal(full.k, short.k) and torch.equal(full.v, short.v)
        assert (full.frames, full.total_frames) == (short.frames, short.total_frames)
