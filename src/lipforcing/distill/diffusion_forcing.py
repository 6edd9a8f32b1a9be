"""Teacher flow matching and Stage 1 Diffusion Forcing as pure step functions.

Teacher (ours where the paper is silent): bidirectional flow matching on mouth inpainting,
t = shift(u), u ~ U(0, 1) with shift 5 (Wan's shifted sampling); per sample, with probability
``all_drop`` the audio and both references are zeroed and with ``audio_drop`` only the audio, so
both CFG drop modes are trained.

Stage 1 (spec section 7): every 3-latent-frame chunk gets one time drawn uniformly from the
student grid {tau_j : j in student_steps}; frames in a chunk share it, chunks are independent;
the block-causal student regresses the velocity.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from lipforcing.config import (
    CausalConfig,
    DiffusionForcingConfig,
    ScheduleConfig,
    TeacherTrainConfig,
)
from lipforcing.diffusion.losses import flow_matching_loss, mouth_weight, sample_shifted_t
from lipforcing.diffusion.schedules import shifted_timesteps
from lipforcing.models.conditioning import LipSyncCond


def drop_conditions(
    cond: LipSyncCond, all_drop: float, audio_drop: float, generator: torch.Generator | None
) -> LipSyncCond:
    """Per-sample CFG dropout: r < all_drop drops audio+refs, r < all_drop+audio_drop audio."""
    r = torch.rand(cond.audio.shape[0], generator=generator)
    keep_refs = (r >= all_drop).to(cond.ref)  # (B,)
    keep_audio = (r >= all_drop + audio_drop).to(cond.audio)
    b5 = (-1, 1, 1, 1, 1)
    return dataclasses.replace(
        cond,
        ref=cond.ref * keep_refs.view(b5),
        ref_seq=cond.ref_seq * keep_refs.view(b5),
        audio=cond.audio * keep_audio.view(-1, 1, 1),
    )


def teacher_step(
    model: nn.Module,
    batch: dict,
    cfg: TeacherTrainConfig,
    generator: torch.Generator | None,
) -> tuple[Tensor, dict[str, float]]:
    """Flow-matching loss of the bidirectional teacher on a batch {x0, cond}."""
    x0, cond = batch["x0"], batch["cond"]
    cond = drop_conditions(cond, cfg.all_drop, cfg.audio_drop, generator)
    t = sample_shifted_t(x0.shape[0], cfg.shift, generator)
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    loss = flow_matching_loss(model, x0, t, noise, cond, mouth_weight(cond.mask, cfg.mouth_weight))
    return loss, {"loss": float(loss.detach())}


def chunk_times(
    batch: int, num_frames: int, causal: CausalConfig, schedule: ScheduleConfig, generator
) -> Tensor:
    """Per-frame times (B, F): one grid value tau_j, j ~ U(student_steps), per chunk."""
    taus = shifted_timesteps(schedule.num_steps, schedule.shift).float()
    grid = taus[list(causal.student_steps)]  # (J,)
    n = causal.chunk_frames
    chunks = -(-num_frames // n)
    pick = torch.randint(len(grid), (batch, chunks), generator=generator)
    return grid[pick].repeat_interleave(n, dim=1)[:, :num_frames]


def diffusion_forcing_step(
    model: nn.Module,
    batch: dict,
    cfg: DiffusionForcingConfig,
    causal: CausalConfig,
    schedule: ScheduleConfig,
    generator: torch.Generator | None,
) -> tuple[Tensor, dict[str, float]]:
    """Stage 1 loss of the block-causal student on a batch {x0, cond}."""
    x0, cond = batch["x0"], batch["cond"]
    t = chunk_times(x0.shape[0], x0.shape[2], causal, schedule, generator)
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    loss = flow_matching_loss(model, x0, t, noise, cond)
    return loss, {"loss": float(loss.detach())}
