"""DMD maths: direction on analytic Gaussians, the j* gradient, window scale, reward weight."""

from __future__ import annotations

import math

import pytest
import torch
from distill_helpers import toy_batch, toy_model

from lipforcing.config import CausalConfig, DMDConfig, ScheduleConfig
from lipforcing.diffusion.guidance import sync_window_scale
from lipforcing.diffusion.schedules import shifted_timesteps
from lipforcing.distill.dmd import (
    critic_step,
    dmd_gradient,
    dmd_loss,
    generator_loss,
    student_step,
    teacher_scale,
)
from lipforcing.distill.reward import reward_weight


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
    cfg = DMDConfig(guidance="none", reward=False)
    g = torch.Generator().manual_seed(0)
    x_hat = theta + torch.randn(256, 1, generator=g)
    loss, _ = generator_loss(x_hat, real, fake, None, cfg, ScheduleConfig(), g)
    loss.backward()
    assert theta.grad < 0  # descending increases theta: toward the real mean 2.0
    # the critic equal to the teacher gives exactly zero gradient
    x_hat2 = theta.detach().requires_grad_() + torch.zeros(8, 1)
    loss2, _ = generator_loss(x_hat2, real, real, None, cfg, ScheduleConfig(), g)
    loss2.backward()
    assert float(loss2.detach()) == 0.0


def test_dmd_loss_gradient_is_the_normalised_difference():
    g = torch.Generator().manual_seed(1)
    x_hat = torch.randn(3, 5, generator=g, requires_grad=True)
    x0_real, x0_fake = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    grad = dmd_gradient(x_hat.detach(), x0_real, x0_fake)
    norm = (x_hat.detach() - x0_real).abs().mean(dim=1, keepdim=True)
    torch.testing.assert_close(grad, (x0_fake - x0_real) / norm)
    w = torch.tensor([1.0, 2.0, 0.5])
    dmd_loss(x_hat, grad, w).backward()
    torch.testing.assert_close(x_hat.grad, w[:, None] * grad / 5 / 3)


def test_sync_window_and_static_scales():
    taus = shifted_timesteps(50, 5.0)
    t = taus.float()
    s = teacher_scale(t, DMDConfig(guidance="window"), ScheduleConfig())
    # j in [20, 40]; the rounded bounds 0.556/0.882 leave the endpoints tau_20 = 0.8824 and
    # tau_40 = 0.5556 just outside (a measure-zero set for continuous DMD times)
    for j in range(51):
        expect = 4.5 if 0.556 <= float(taus[j]) <= 0.882 else 1.0
        assert float(s[j]) == expect
        if 21 <= j <= 39:
            assert expect == 4.5
        if j < 20 or j > 40:
            assert expect == 1.0
    assert sync_window_scale(0.7) == 4.5 and sync_window_scale(0.9) == 1.0
    assert torch.all(teacher_scale(t, DMDConfig(guidance="static"), ScheduleConfig()) == 4.5)
    assert torch.all(teacher_scale(t, DMDConfig(guidance="none"), ScheduleConfig()) == 1.0)


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
    cfg = DMDConfig(num_chunks=2, guidance="window", reward=True)
    causal, sched = CausalConfig(), ScheduleConfig()
    g = torch.Generator().manual_seed(seed)
    rewards = lambda x0, batch: torch.ones(x0.shape[0])  # noqa: E731
    loss, metrics = student_step(
        student, teacher, critic, toy_batch(2, 6), cfg, causal, sched, g, rewards
    )
    loss.backward()
    k = metrics["grad_call"]
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


def test_critic_step_trains_only_the_critic():
    student, critic = toy_model(), toy_model(seed=2)
    g = torch.Generator().manual_seed(0)
    loss, _ = critic_step(
        critic,
        student,
        toy_batch(1, 3),
        DMDConfig(num_chunks=1),
        CausalConfig(),
        ScheduleConfig(),
        g,
    )
    loss.backward()
    assert all(p.grad is None for p in student.parameters())
    assert any(p.grad is not None for p in critic.parameters())
