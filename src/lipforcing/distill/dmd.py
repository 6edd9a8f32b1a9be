"""Distribution Matching Distillation with the Lip Forcing recipe (spec section 7, Stage 2).

Generator step (pure: models, batch, config, draws -> loss, metrics):
1. Sample the supervised call j* from the student's grid indices (once per optimiser step,
   the same for every micro-batch and process, as the release broadcasts it).
2. Roll the student out causally (shared core :func:`diffusion.causal.rollout`); only call j*
   carries autograd and each chunk's output is call j*'s x0 (Self-Forcing's exit step); each
   chunk's clean output is written to the KV cache under no_grad.
3. Draw t = shift(u), u ~ U[t_min, t_max], and re-noise the rollout: x_t = (1 - t) x_hat + t eps.
4. Teacher x0 with Sync-Window CFG (or static CFG, or none); critic x0 never guided.
5. DMD2 gradient grad = (x0_fake - x0_real) / mean|x_hat - x0_real| (per sample), loss
   0.5 ||x_hat - sg(x_hat - grad)||^2, so d loss / d x_hat = grad.
6. Per-sample weight w = exp(beta R) from the SyncNet reward (stop-gradient).

Critic step (``DMDConfig.critic_loss``): the fake score's denoising loss on a no-grad student
rollout, either a flow-matching velocity loss on the full two-call rollout (paper, as we read
it) or the release's MSE of its x0 prediction on a rollout exiting at a random call j*, i.e.
on the same distribution of samples the generator is scored on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lipforcing.config import CausalConfig, DMDConfig, ScheduleConfig
from lipforcing.diffusion.causal import rollout
from lipforcing.diffusion.guidance import guided_velocity, sync_window_scale
from lipforcing.diffusion.losses import flow_matching_loss
from lipforcing.diffusion.schedules import ShiftedGrid, add_noise, x0_from_velocity
from lipforcing.distill.diffusion_forcing import draw_times
from lipforcing.distill.draws import Draws
from lipforcing.distill.reward import RewardFn, RewardShaper


def dmd_gradient(x_hat: Tensor, x0_real: Tensor, x0_fake: Tensor, eps: float = 1e-6) -> Tensor:
    """DMD2's normalised gradient (x0_fake - x0_real) / mean|x_hat - x0_real|, per sample."""
    dims = tuple(range(1, x_hat.dim()))
    norm = (x_hat - x0_real).abs().mean(dim=dims, keepdim=True).clamp_min(eps)
    return (x0_fake - x0_real) / norm


def dmd_loss_per_sample(x_hat: Tensor, grad: Tensor) -> Tensor:
    """0.5 ||x_hat - sg(x_hat - grad)||^2 per sample (mean over elements), (B,).

    Its gradient w.r.t. x_hat is ``grad / numel_per_sample``: descending it moves x_hat against
    ``grad``, i.e. from the critic's x0 toward the teacher's.
    """
    target = (x_hat - grad).detach()
    return 0.5 * (x_hat - target).float().square().flatten(1).mean(dim=1)


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

    x_hat: Tensor  # (B, C, F, h, w), grad only through call j* (when grad is enabled)
    exit_call: int  # index into causal.student_steps


def student_rollout(
    student: nn.Module,
    cond,
    cfg: DMDConfig,
    causal: CausalConfig,
    schedule: ScheduleConfig,
    draws: Draws,
    exit_early: bool = True,
) -> Rollout:
    """Steps 1-2: j* uniform over the student's calls; the chunks exit at j* (or run all calls
    when ``exit_early`` is False, without any gradient)."""
    k = draws.shared_choice(len(causal.student_steps))
    x_hat = rollout(
        student,
        cond,
        cfg.num_chunks,
        causal,
        ShiftedGrid.from_config(schedule),
        list(draws.samples),  # one generator per sample: row i draws from sample i's only
        grad_call=k if exit_early else None,
    )
    return Rollout(x_hat, k if exit_early else len(causal.student_steps) - 1)


def generator_loss(
    x_hat: Tensor,
    teacher: nn.Module,
    critic: nn.Module,
    cond,
    cfg: DMDConfig,
    schedule: ScheduleConfig,
    draws: Draws,
    reward: Tensor | None = None,
    shaper: RewardShaper | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Steps 3-6 on a rollout x_hat (B, C, F, h, w)."""
    t = draw_times(draws, schedule.shift, cfg.t_min, cfg.t_max).to(x_hat)
    noise = draws.randn(x_hat.shape[1:]).to(x_hat)
    with torch.no_grad():
        x_t = add_noise(x_hat.detach(), noise, t)
        scale = teacher_scale(t, cfg, schedule)
        v_real = guided_velocity(teacher, x_t, t, cond, scale, schedule.drop_mode)
        x0_real = x0_from_velocity(x_t, v_real, t)
        x0_fake = x0_from_velocity(x_t, critic(x_t, t, cond), t)
        grad = dmd_gradient(x_hat.detach(), x0_real, x0_fake)
    per_sample = dmd_loss_per_sample(x_hat, grad)
    metrics = {
        "dmd_loss": float(per_sample.detach().mean()),
        "grad_abs": float(grad.abs().mean()),
        "guided_frac": float((scale != 1.0).float().mean()),
    }
    if reward is None or shaper is None:
        return per_sample.mean(), metrics
    loss, weight = shaper.loss(per_sample, reward)
    metrics |= {"reward": float(reward.float().mean()), "weight": float(weight.mean())}
    return loss, metrics


def student_step(
    student: nn.Module,
    teacher: nn.Module,
    critic: nn.Module,
    batch: dict,
    cfg: DMDConfig,
    causal: CausalConfig,
    schedule: ScheduleConfig,
    draws: Draws,
    reward_fn: RewardFn | None = None,
    shaper: RewardShaper | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """One generator loss: rollout, DMD gradient, reward weight. Returns (loss, metrics)."""
    cond = batch["cond"]
    ro = student_rollout(student, cond, cfg, causal, schedule, draws)
    reward = reward_fn(ro.x_hat.detach(), batch) if reward_fn is not None else None
    loss, metrics = generator_loss(
        ro.x_hat, teacher, critic, cond, cfg, schedule, draws, reward, shaper
    )
    metrics["exit_call"] = ro.exit_call
    return loss, metrics


def critic_step(
    critic: nn.Module,
    student: nn.Module,
    batch: dict,
    cfg: DMDConfig,
    causal: CausalConfig,
    schedule: ScheduleConfig,
    draws: Draws,
) -> tuple[Tensor, dict[str, float]]:
    """Fake-score denoising loss on a fresh no-grad student rollout (step 7)."""
    cond = batch["cond"]
    exit_early = cfg.critic_loss == "x0_exit"
    with torch.no_grad():
        x_hat = student_rollout(student, cond, cfg, causal, schedule, draws, exit_early).x_hat
    t = draw_times(draws, schedule.shift, cfg.t_min, cfg.t_max).to(x_hat)
    noise = draws.randn(x_hat.shape[1:]).to(x_hat)
    if exit_early:
        x_t = add_noise(x_hat, noise, t)
        x0_pred = x0_from_velocity(x_t, critic(x_t, t, cond), t)
        return (x0_pred - x_hat).float().square().mean(), {}
    return flow_matching_loss(critic, x_hat, t, noise, cond), {}
