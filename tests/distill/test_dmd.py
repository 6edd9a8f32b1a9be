"""DMD maths: direction on analytic Gaussians, the j* gradient, window scale, reward weight."""

from __future__ import annotations

import math

import pytest
import torch
from distill_helpers import toy_batch, toy_model

from lipforcing.config import CausalConfig, DMDConfig, RewardConfig, ScheduleConfig
from lipforcing.diffusion.guidance import sync_window_scale
from lipforcing.diffusion.schedules import ShiftedGrid, shifted_timesteps
from lipforcing.distill.dmd import (
    critic_step,
    dmd_gradient,
    dmd_loss_per_sample,
    generator_loss,
    student_step,
    teacher_scale,
)
from lipforcing.distill.draws import Draws
from lipforcing.distill.reward import RewardShaper, reward_weight


def draws(batch: int, seed: int = 0) -> Draws:
    return Draws.for_micro_batch(seed, 0, 0, batch)


def gaussian_x0(mean: float, std: float):
    """A 'model' returning the exact velocity of data N(mean, std^2): E[x0 | x_t] analytic."""

    def model(x_t, t, cond, *args, **kwargs):
        tt = t.view(-1, *([1] * (x_t.dim() - 1)))
        a = 1 - tt
        x0 = mean + a * std**2 / (a**2 * std**2 + tt**2) * (x_t - a * mean)
        return (x_t - x0) / tt  # v such that x_t - t v = x0

    return model


def test_dmd_gradient_moves_the_generator_from_fake_toward_real():
    real, fake = gaussian_x0(2.0, 1.0), gaussian_x0(-1.0, 1.0)
    theta = torch.tensor(-1.0, requires_grad=True)  # generator x_hat = theta + z matches `fake`
    cfg = DMDConfig(guidance="none", reward=None)
    g = torch.Generator().manual_seed(0)
    x_hat = theta + torch.randn(256, 1, generator=g)
    loss, _ = generator_loss(x_hat, real, fake, None, cfg, ScheduleConfig(), draws(256))
    loss.backward()
    assert theta.grad < 0  # descending increases theta: toward the real mean 2.0
    # the critic equal to the teacher gives exactly zero gradient
    x_hat2 = theta.detach().requires_grad_() + torch.zeros(8, 1)
    loss2, _ = generator_loss(x_hat2, real, real, None, cfg, ScheduleConfig(), draws(8))
    loss2.backward()
    assert float(loss2.detach()) == 0.0


def test_dmd_loss_gradient_is_the_normalised_difference():
    g = torch.Generator().manual_seed(1)
    x_hat = torch.randn(3, 5, generator=g, requires_grad=True)
    x0_real, x0_fake = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    grad = dmd_gradient(x_hat.detach(), x0_real, x0_fake)
    norm = (x_hat.detach() - x0_real).abs().mean(dim=1, keepdim=True)
    torch.testing.assert_close(grad, (x0_fake - x0_real) / norm)
    r = torch.tensor([0.0, 0.5, -0.3])
    loss, w = RewardShaper(RewardConfig(beta=2.0)).loss(dmd_loss_per_sample(x_hat, grad), r)
    loss.backward()
    torch.testing.assert_close(w, torch.exp(2.0 * r))
    torch.testing.assert_close(x_hat.grad, w[:, None] * grad / 5 / 3)


def test_sync_window_is_steps_20_to_40_of_the_grid_and_static_scales():
    taus = shifted_timesteps(50, 5.0)
    t = taus.float()
    sched = ScheduleConfig()
    assert sched.window_hi == pytest.approx(float(taus[20])) == pytest.approx(15 / 17)
    assert sched.window_lo == pytest.approx(float(taus[40])) == pytest.approx(5 / 9)
    s = teacher_scale(t, DMDConfig(guidance="window"), sched)
    for j in range(51):  # bounds derived from the grid: both endpoints are inside
        assert float(s[j]) == (4.5 if 20 <= j <= 40 else 1.0), j
    lo, hi = sched.window_lo, sched.window_hi
    assert sync_window_scale(0.7, lo, hi, 4.5) == 4.5 and sync_window_scale(0.9, lo, hi, 4.5) == 1.0
    assert torch.all(teacher_scale(t, DMDConfig(guidance="static"), sched) == 4.5)
    assert torch.all(teacher_scale(t, DMDConfig(guidance="none"), sched) == 1.0)


def test_reward_weight_formula_and_no_gradient():
    r = torch.tensor([-0.5, 0.0, 1.3], requires_grad=True)
    w = reward_weight(r, 2.0)
    assert not w.requires_grad
    for ri, wi in zip(r.tolist(), w.tolist()):
        assert wi == pytest.approx(math.exp(2.0 * ri), rel=1e-6)


@pytest.mark.parametrize("seed", [0, 3])
def test_only_call_j_star_gets_gradient(seed):
    student, teacher, critic = toy_model(), toy_model(seed=1), toy_model(seed=2)
    calls = []
    fwd = student.forward

    def recording(x_t, t, cond, kv_cache=None, *, update_cache=False):
        calls.append((float(t.flatten()[0]), torch.is_grad_enabled(), update_cache))
        return fwd(x_t, t, cond, kv_cache, update_cache=update_cache)

    student.forward = recording
    cfg = DMDConfig(num_chunks=2, guidance="window")
    causal, sched = CausalConfig(), ScheduleConfig()
    rewards = lambda x0, batch: torch.ones(x0.shape[0])  # noqa: E731
    shaper = RewardShaper(cfg.reward)
    loss, metrics = student_step(
        student,
        teacher,
        critic,
        toy_batch(2, 6),
        cfg,
        causal,
        sched,
        draws(2, seed),
        rewards,
        shaper,
    )
    loss.backward()
    k = metrics["exit_call"]
    taus = shifted_timesteps(50, 5.0).tolist()
    t_star = taus[causal.student_steps[k]]
    grads = [(t, en) for t, en, upd in calls if not upd]
    assert all(en == (abs(t - t_star) < 1e-6) for t, en in grads)  # grad only at j*
    assert sum(en for _, en in grads) == cfg.num_chunks  # once per chunk
    assert all(not en for _, en, upd in calls if upd)  # clean KV pass without grad
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for p in critic.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert metrics["weight"] == pytest.approx(math.exp(2.0))


@pytest.mark.parametrize("mode", ["velocity", "x0_exit"])
def test_critic_step_trains_only_the_critic(mode):
    student, critic = toy_model(), toy_model(seed=2)
    cfg = DMDConfig(num_chunks=1, critic_loss=mode)
    loss, _ = critic_step(
        critic, student, toy_batch(1, 3), cfg, CausalConfig(), ScheduleConfig(), draws(1)
    )
    loss.backward()
    assert all(p.grad is None for p in student.parameters())
    assert any(p.grad is not None for p in critic.parameters())


def test_release_critic_loss_is_the_t2_weighted_velocity_loss_on_an_early_exit_rollout():
    """x0_exit: MSE(x0_critic, x_hat) on the rollout that exits at j* equals t^2 * MSE of the
    velocity; the rollout it sees is the student's output after call j* only."""
    from lipforcing.diffusion.causal import rollout

    student, critic = toy_model(), toy_model(seed=2)
    batch, causal, sched = toy_batch(1, 3), CausalConfig(), ScheduleConfig()
    cfg = DMDConfig(num_chunks=1, critic_loss="x0_exit")
    d = draws(1, seed=4)
    k = Draws.for_micro_batch(4, 0, 0, 1).shared_choice(2)
    loss, _ = critic_step(critic, student, batch, cfg, causal, sched, d)
    # oracle: redo the same draws by hand
    d2 = draws(1, seed=4)
    d2.shared_choice(2)
    with torch.no_grad():
        grid = ShiftedGrid.from_config(sched)
        x_hat = rollout(student, batch["cond"], 1, causal, grid, list(d2.samples), grad_call=k)
        u = d2.rand()
        t = 5 * (0.001 + 0.998 * u) / (1 + 4 * (0.001 + 0.998 * u))
        noise = d2.randn(x_hat.shape[1:])
        x_t = (1 - t.view(-1, 1, 1, 1, 1)) * x_hat + t.view(-1, 1, 1, 1, 1) * noise
        v = critic(x_t, t, batch["cond"])
        expect = (t.view(-1, 1, 1, 1, 1) ** 2 * (v - (noise - x_hat)) ** 2).mean()
    torch.testing.assert_close(loss.detach(), expect, rtol=1e-5, atol=1e-7)
