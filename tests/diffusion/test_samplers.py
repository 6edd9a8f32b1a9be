import torch

from lipforcing.diffusion.samplers import euler_sample, few_step_sample
from lipforcing.diffusion.schedules import ShiftedGrid
from lipforcing.models.conditioning import LipSyncCond

GRID = ShiftedGrid(50, 5.0)


def make_cond(b=2, f=3, hw=4, a=8):
    z = torch.randn(b, 16, f, hw, hw)
    return LipSyncCond(
        ref=z, mask=torch.ones(b, 1, f, hw, hw), masked=z, ref_seq=z, audio=torch.randn(b, 4 * f, a)
    )


def test_constant_velocity_lands_exactly_on_endpoint():
    """x_t = x0 + t*v has constant velocity v; Euler integration is exact for it."""
    x0, eps = torch.randn(2, 16, 3, 4, 4, dtype=torch.float64), torch.randn(2, 16, 3, 4, 4)
    eps = eps.double()
    v = eps - x0
    steps = []
    out = euler_sample(
        lambda x, t, c: v, eps, make_cond(), grid=GRID, cfg_scale=1.0, callback=steps.append
    )
    assert torch.allclose(out, x0, atol=1e-12)
    assert len(steps) == 50 and all(torch.allclose(s.x0_pred, x0, atol=1e-12) for s in steps)


def test_cfg_schedule_and_drop_modes_reach_the_model():
    seen = []

    def model(x, t, cond):
        seen.append((x.shape[0], float(cond.audio.abs().sum()), float(cond.ref.abs().sum())))
        return torch.zeros_like(x)

    cond = make_cond(b=1)
    euler_sample(
        model,
        torch.randn(1, 16, 3, 4, 4),
        cond,
        grid=ShiftedGrid(4, 5.0),
        cfg_scale=lambda j: 4.5 if j == 2 else 1.0,
        drop_mode="audio",
    )
    assert [s[0] for s in seen] == [1, 1, 2, 1]  # the guided step batches both branches
    euler_sample(
        model,
        torch.randn(1, 16, 3, 4, 4),
        cond,
        grid=ShiftedGrid(1, 5.0),
        cfg_scale=2.0,
        drop_mode="all",
    )
    assert seen[-1][0] == 2


def test_cfg_combines_branches():
    cond = make_cond(b=1)

    def model(x, t, c):  # v_cond = 1 where audio present, v_uncond = 0
        return torch.stack(
            [torch.full_like(x[0], float(c.audio[i].abs().sum() > 0)) for i in range(x.shape[0])]
        )

    steps = []
    euler_sample(
        model,
        torch.zeros(1, 16, 3, 4, 4),
        cond,
        grid=ShiftedGrid(1, 5.0),
        cfg_scale=3.0,
        callback=steps.append,
    )
    assert torch.allclose(steps[0].velocity, torch.full_like(steps[0].velocity, 3.0))


def test_few_step_sampler_renoises_with_fresh_noise():
    taus = GRID.times()
    x0 = torch.randn(1, 16, 3, 4, 4)
    calls = []

    def model(x, t, cond):  # a perfect x0 oracle: v = (x - x0) / t
        calls.append((float(t[0]), x.clone()))
        return (x - x0) / t.view(-1, 1, 1, 1, 1)

    eps2 = torch.randn_like(x0)
    out = few_step_sample(
        model, torch.randn_like(x0), make_cond(b=1), grid=GRID, steps=(0, 30), renoise=[eps2]
    )
    assert torch.allclose(out, x0, atol=1e-5)
    assert [round(c[0], 3) for c in calls] == [1.0, round(taus[30].item(), 3)]
    t30 = taus[30].item()
    assert torch.allclose(calls[1][1], (1 - t30) * x0 + t30 * eps2, atol=1e-5)


def test_few_step_sampler_is_seeded():
    model = lambda x, t, c: 0.5 * x  # noqa: E731
    noise = torch.randn(1, 16, 3, 4, 4)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return few_step_sample(model, noise, make_cond(b=1), grid=GRID, steps=(0, 30), generator=g)

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
