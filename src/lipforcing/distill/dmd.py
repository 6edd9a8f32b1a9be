"""Distribution Matching Distillation with the Lip Forcing recipe (spec section 7, Stage 2).

Generator step (pure: models, batch, config -> loss, metrics):
1. Sample the supervised call j* from the student's grid indices.
2. Roll the student out causally (shared core :func:`diffusion.causal.rollout`); only call j*
   carries autograd; each chunk's clean output is written to the KV cache under no_grad.
3. Draw t = shift(u), u ~ U[t_min, t_max], and re-noise the rollout: x_t = (1 - t) x_hat + t eps.
4. Teacher x0 with Sync-Window CFG (or static CFG, or none); critic x0 never guided.
5. DMD2 gradient grad = (x0_fake - x0_real) / mean|x_hat - x0_real| (per sample), loss
   0.5 ||x_hat - sg(x_hat - grad)||^2, so d loss / d x_hat = grad.
6. Per-sample weight w = exp(beta R) from the SyncNet reward (stop-gradient).

Critic step: flow-matching denoising loss of the fake-score model on detached student samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lipforcing.config import CausalConfig, DMDConfig, ScheduleConfig
from lipforcing.diffusion.causal import rollout
from lipforcing.diffusion.guidance import guided_velocity, sync_window_scale
from lipforcing.diffusion.losses import flow_matching_loss, sample_shifted_t
from lipforcing.diffusion.schedules import ShiftedGrid, add_noise, x0_from_velocity
from lipforcing.distill.reward import RewardFn, reward_weight


def dmd_gradient(x_hat: Tensor, x0_real: Tensor, x0_fake: Tensor, eps: float = 1e-6) -> Tensor:
    """DMD2's normalised gradient (x0_fake - x0_real) / mean|x_hat - x0_real|, per sample."""
    dims = tuple(range(1, x_hat.dim()))
    norm = (x_hat - x0_real).abs().mean(dim=dims, keepdim=True).clamp_min(eps)
    return (x0_fake - x0_real) / norm


def dmd_loss(x_hat: Tensor, grad: Tensor, weight: Tensor | None = None) -> Tensor:
    """0.5 ||x_hat - sg(x_hat - grad)||^2 per sample (mean over elements), weighted, averaged.

    Its gradient w.r.t. x_hat is ``weight * grad / numel_per_sample / B``: descending it moves
    x_hat against ``grad``, i.e. from the critic's x0 toward the teacher's.
    """
    target = (x_hat - grad).detach()
    per_sample = 0.5 * (x_hat - target).float().square().flatten(1).mean(dim=1)  # (B,)
    if weight is not None:
        per_sample = per_sample * weight.to(per_sample)
    return per_sample.mean()


def teacher_scale(t: Tensor, cfg: DMDConfig, schedule: ScheduleConfig) -> Tensor:
    """Per-sample teacher CFG scale: Sync-Window, static, or none (ablation switch)."""
    if cfg.guidance == "window":
        return sync_window_scale(t, schedule.window_lo, schedule.window_hi, schedule.window_scale)
    if cfg.guidance == "static":
        return torch.full_like(t, schedule.teacher_cfg)
    return torch.ones_like(t)


@dataclass
class Rollout:
    """A student rollout and which call carried its gradient."""

    x_hat: Tensor  # (B, C, F, h, w), grad only through call j*
    grad_call: int  # index into causal.student_steps


def student_rollout(
    student: nn.Module, cond, cfg: DMDConfig, causal: CausalConfig, schedule, generator
) -> Rollout:
    """Steps 1-2: sample j* uniformly, roll out with gradients only at j*."""
    k = int(torch.randint(len(causal.student_steps), (1,), generator=generator))
    grid = ShiftedGrid.from_config(schedule)
    x_hat = rollout(student, cond, cfg.num_chunks, causal, grid, generator, grad_call=k)
    return Rollout(x_hat, k)


def generator_loss(
    x_hat: Tensor,
    teacher: nn.Module,
    critic: nn.Module,
    cond,
    cfg: DMDConfig,
    schedule: ScheduleConfig,
    generator: torch.Generator | None,
    reward: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Steps 3-6 on a rollout x_hat (B, C, F, h, w)."""
    b = x_hat.shape[0]
    t = sample_shifted_t(b, schedule.shift, generator, cfg.t_min, cfg.t_max).to(x_hat)
    noise = torch.randn(x_hat.shape, generator=generator).to(x_hat)
    with torch.no_grad():
        x_t = add_noise(x_hat.detach(), noise, t)
        scale = teacher_scale(t, cfg, schedule)
        v_real = guided_velocity(teacher, x_t, t, cond, scale, schedule.drop_mode)
        x0_real = x0_from_velocity(x_t, v_real, t)
        x0_fake = x0_from_velocity(x_t, critic(x_t, t, cond), t)
        grad = dmd_gradient(x_hat.detach(), x0_real, x0_fake)
    weight = None
    if cfg.reward and reward is not None:
        weight = reward_weight(reward, cfg.reward_beta)
    loss = dmd_loss(x_hat, grad, weight)
    metrics = {
        "dmd_loss": float(loss.detach()),
        "grad_abs": float(grad.abs().mean()),
        "guided_frac": float((scale != 1.0).float().mean()),
    }
    if reward is not None:
        metrics["reward"] = float(reward.float().mean())
        metrics["weight"] = float(reward_weight(reward, cfg.reward_beta).mean())
    return loss, metrics


def student_step(
    student: nn.Module,
    teacher: nn.Module,
    critic: nn.Module,
    batch: dict,
    cfg: DMDConfig,
    causal: CausalConfig,
    schedule: ScheduleConfig,
    generator: torch.Generator | None,
    reward_fn: RewardFn | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """One generator loss: rollout, DMD gradient, reward weight. Returns (loss, metrics)."""
    cond = batch["cond"]
    ro = student_rollout(student, cond, cfg, causal, schedule, generator)
    reward = reward_fn(ro.x_hat.detach(), batch) if (reward_fn is not None) else None
    loss, metrics = generator_loss(
        ro.x_hat, teacher, critic, cond, cfg, schedule, generator, reward
    )
    metrics["grad_call"] = ro.grad_call
    return loss, metrics


def critic_step(
    critic: nn.Module,
    student: nn.Module,
    batch: dict,
    cfg: DMDConfig,
    causal: CausalConfig,
    schedule: ScheduleConfig,
    generator: torch.Generator | None,
) -> tuple[Tensor, dict[str, float]]:
    """Fake-score denoising loss on a fresh no-grad student rollout (step 7)."""
    cond = batch["cond"]
    with torch.no_grad():
        grid = ShiftedGrid.from_config(schedule)
        x_hat = rollout(student, cond, cfg.num_chunks, causal, grid, generator)
    b = x_hat.shape[0]
    t = sample_shifted_t(b, schedule.shift, generator, cfg.t_min, cfg.t_max).to(x_hat)
    noise = torch.randn(x_hat.shape, generator=generator).to(x_hat)
    loss = flow_matching_loss(critic, x_hat, t, noise, cond)
    return loss, {"critic_loss": float(loss.detach())}
