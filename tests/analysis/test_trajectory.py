"""Paired arms, the factorial's Euler jump and batched CFG branches against independent oracles."""

from __future__ import annotations

import pytest
import torch
from analysis_helpers import toy_cond, toy_teacher

from lipforcing.analysis.trajectory import (
    NO_DROP,
    TrajectoryConfig,
    branch_velocities,
    clip_noise,
    run_clip,
    run_factorial,
    run_trajectories,
)
from lipforcing.diffusion.guidance import guided_velocity
from lipforcing.diffusion.samplers import euler_sample
from lipforcing.diffusion.schedules import ShiftedGrid, shifted_timesteps
from lipforcing.models.conditioning import LipSyncCond

FRAMES = 3
SHAPE = (16, FRAMES, 4, 4)
FIELDS = ("ref", "mask", "masked", "ref_seq", "audio")


def small_cfg(**kw) -> TrajectoryConfig:
    base = dict(num_steps=8, sweep_scales=(1.0, 4.5), landings=(1, 3, 6))
    return TrajectoryConfig(**{**base, **kw})


def by_key(samples):
    return {(s.panel, s.s0, s.s1, s.drop_mode, s.j): s for s in samples}


def test_factorial_jump_is_the_closed_form_euler_step():
    model, cond = toy_teacher(), toy_cond(FRAMES)
    cfg = small_cfg()
    noise = clip_noise(0, 3, SHAPE)
    taus = shifted_timesteps(cfg.num_steps, cfg.shift)
    got = by_key(run_factorial(model, noise, cond, cfg))
    assert len(got) == len(cfg.landing_steps) * 7
    one = torch.ones(1)
    for drop in ("all", "audio"):
        for s0 in (1.0, 4.5):
            v0 = guided_velocity(model, noise, one, cond, s0, drop)  # oracle: the library's CFG
            for j1 in cfg.landing_steps:
                t1 = float(taus[j1])
                x_t1 = noise + (t1 - 1.0) * v0  # x_{t1} = x_{t0} + (t1 - t0) v
                for s1 in (1.0, 4.5):
                    v1 = guided_velocity(model, x_t1, torch.full((1,), t1), cond, s1, drop)
                    label = NO_DROP if s0 == s1 == 1.0 else drop
                    sample = got[("factorial", s0, s1, label, j1)]
                    assert sample.t == pytest.approx(t1)
                    torch.testing.assert_close(sample.x0, (x_t1 - t1 * v1)[0], atol=1e-5, rtol=1e-4)


def test_constant_velocity_model_lands_exactly_on_its_x0():
    """v = noise - x0 everywhere: every schedule's x0 prediction is x0 at every landing."""
    noise = clip_noise(0, 0, SHAPE)
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))

    def constant(x_t, t, cond):
        return (noise - x0[None]).expand_as(x_t)

    for s in run_factorial(constant, noise, toy_cond(FRAMES), small_cfg()):
        torch.testing.assert_close(s.x0, x0, atol=1e-5, rtol=0)


def test_trajectory_arms_equal_the_sampler_and_share_one_noise():
    model, cond = toy_teacher(), toy_cond(FRAMES)
    cfg = small_cfg(sweep_scales=(1.0, 3.0, 4.5))
    noise = clip_noise(0, 1, SHAPE)
    seen = []

    def recording(x_t, t, c):
        seen.append((x_t.clone(), t.clone()))
        return model(x_t, t, c)

    got = by_key(run_trajectories(recording, noise, cond, cfg))
    first = [x for x, t in seen if bool((t == 1.0).all())]
    assert first and all(torch.equal(row, noise[0]) for x in first for row in x)  # one x_T
    for scale, drop in ((1.0, NO_DROP), (4.5, "all"), (4.5, "audio")):
        ref = {}
        end = euler_sample(
            model,
            noise,
            cond,
            grid=ShiftedGrid(cfg.num_steps, cfg.shift),
            cfg_scale=scale,
            drop_mode="all" if drop == NO_DROP else drop,
            callback=lambda info, ref=ref: ref.__setitem__(info.j, info.x0_pred[0]),
        )
        for j in range(cfg.num_steps):
            torch.testing.assert_close(got[("trajectory", scale, scale, drop, j)].x0, ref[j])
        sweep = got[("sweep", scale, scale, drop, cfg.num_steps)].x0
        torch.testing.assert_close(sweep, end[0], atol=1e-5, rtol=1e-4)
    assert ("sweep", 3.0, 3.0, "all", cfg.num_steps) in got  # sweep-only arms: endpoints only
    assert not any(k[0] == "trajectory" and k[1] == 3.0 for k in got)


def test_condition_blind_teacher_makes_every_paired_arm_identical():
    """With v_cond == v_uncond CFG is a no-op, so arms that share x_T must agree exactly."""
    model, cond = toy_teacher(), toy_cond(FRAMES)

    def blind(x_t, t, c):  # every row sees the clip's full conditions, whatever its branch
        n = x_t.shape[0]
        full = LipSyncCond(
            *(getattr(cond, k).expand(n, *getattr(cond, k).shape[1:]) for k in FIELDS)
        )
        return model(x_t, t, full)

    cfg = small_cfg(sweep_scales=(1.0, 6.0))
    samples = list(run_clip(blind, clip_noise(0, 2, SHAPE), cond, cfg))
    groups: dict = {}
    for s in samples:
        groups.setdefault((s.panel, s.j), []).append(s.x0)
    for xs in groups.values():
        for x in xs[1:]:
            torch.testing.assert_close(x, xs[0], atol=1e-5, rtol=1e-5)
    # Across panels: the (s, s) factorial at j_1 = 1 is the s-trajectory's x0 at step 1.
    got = by_key(samples)
    for s, drop in ((1.0, NO_DROP), (4.5, "audio")):
        torch.testing.assert_close(
            got[("factorial", s, s, drop, 1)].x0, got[("trajectory", s, s, drop, 1)].x0
        )


def test_batched_branches_equal_separate_guided_calls():
    model, cond = toy_teacher(), toy_cond(FRAMES)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, *SHAPE, generator=g)
    t = torch.tensor([0.9, 0.5, 0.2])
    needs = [{"all", "audio"}, set(), {"audio"}]
    out = branch_velocities(model, x, t, cond, needs, max_batch=4)  # 6 jobs over two calls
    for k, need in enumerate(needs):
        assert set(out[k]) == {"cond", *need}
        torch.testing.assert_close(out[k]["cond"], model(x[k : k + 1], t[k : k + 1], cond)[0])
        for m in need:
            ref = model(x[k : k + 1], t[k : k + 1], cond.drop(m))[0]
            torch.testing.assert_close(out[k][m], ref, atol=1e-5, rtol=1e-4)


def test_noise_is_a_pure_function_of_seed_and_clip():
    assert torch.equal(clip_noise(0, 4, SHAPE), clip_noise(0, 4, SHAPE))
    assert not torch.equal(clip_noise(0, 4, SHAPE), clip_noise(0, 5, SHAPE))
    assert not torch.equal(clip_noise(0, 4, SHAPE), clip_noise(1, 4, SHAPE))


def test_config_rejects_out_of_grid_steps():
    with pytest.raises(ValueError):
        TrajectoryConfig(num_steps=10, steps=(10,))
    with pytest.raises(ValueError):
        TrajectoryConfig(num_steps=10, landings=(0,))
    with pytest.raises(ValueError):
        TrajectoryConfig(drop_modes=("text",))


@torch.no_grad()
def test_text_teacher_with_release_drop_and_precomputed_context_kv():
    """A text-conditioned teacher: the release's full drop (negative prompt) and the once-per-clip
    cross-attention keys/values give the same samples as recomputing them on every call."""
    import dataclasses
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
    from model_helpers import random_cond, randomized, small_config

    cfg_m = small_config(attention="bidirectional", use_text_context=True)
    model = randomized(cfg_m)
    cond = random_cond(cfg_m, FRAMES)
    cond = dataclasses.replace(cond, negative=torch.randn_like(cond.context))
    cfg = small_cfg(drop_modes=("release", "audio"))
    noise = clip_noise(0, 1, SHAPE)
    fast = by_key(run_clip(model, noise, cond, cfg))
    slow = by_key(run_clip(lambda x, t, c: model(x, t, c), noise, cond, cfg))  # no context_kv
    assert fast.keys() == slow.keys() and any(k[3] == "release" for k in fast)
    for key, sample in fast.items():
        assert torch.allclose(sample.x0, slow[key].x0, atol=1e-5), key
