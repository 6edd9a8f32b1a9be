"""Teacher flow matching and Stage 1 Diffusion Forcing as pure step functions.

Teacher (ours where the paper is silent): bidirectional flow matching on mouth inpainting,
t = shift(u), u ~ U(0, 1) with shift 5 (Wan's shifted sampling); per sample, with probability
``all_drop`` the audio and both references are zeroed and with ``audio_drop`` only the audio, so
both CFG drop modes are trained.

Stage 1 (spec section 7): every 3-latent-frame chunk gets one time; frames in a chunk share
it, chunks are independent; the block-causal student predicts the clean signal. Paper vs
release (``DiffusionForcingConfig``): times from the student grid {tau_0, tau_30} or the
release's t-list {0.999, 0.769, 0} (a third of the chunks clean context); velocity loss or the
release's 0.5 MSE on x0; the full block-causal mask or one (sink, window) drawn per step from
the release's list, applied through the model's windowed block-causal mask
(``ModelConfig.mask_window``: each chunk sees exactly what the KV cache would hold).

Every random draw comes from the micro-batch's :class:`~lipforcing.distill.draws.Draws`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from lipforcing.config import (
    CausalConfig,
    DiffusionForcingConfig,
    ScheduleConfig,
    TeacherTrainConfig,
)
from lipforcing.diffusion.losses import flow_matching_loss, mouth_weight
from lipforcing.diffusion.schedules import (
    add_noise,
    shift_time,
    shifted_timesteps,
    x0_from_velocity,
)
from lipforcing.distill.draws import Draws
from lipforcing.models.conditioning import LipSyncCond

RELEASE_MAX_T = 0.999  # the release noise scheduler's max_t: its t-list starts there, not at 1


def drop_conditions(
    cond: LipSyncCond, all_drop: float, audio_drop: float, draws: Draws
) -> LipSyncCond:
    """Per-sample CFG dropout: r < all_drop drops audio+refs, r < all_drop+audio_drop audio."""
    r = draws.rand()
    keep_refs = (r >= all_drop).to(cond.ref)  # (B,)
    keep_audio = (r >= all_drop + audio_drop).to(cond.audio)
    b5 = (-1, 1, 1, 1, 1)
    return dataclasses.replace(
        cond,
        ref=cond.ref * keep_refs.view(b5),
        ref_seq=cond.ref_seq * keep_refs.view(b5),
        audio=cond.audio * keep_audio.view(-1, 1, 1),
    )


def draw_times(draws: Draws, shift: float, lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """t = shift(u), u ~ U[lo, hi] per sample (Wan's shifted sampling; the DMD time q(t))."""
    return shift_time(lo + (hi - lo) * draws.rand(), shift)


def teacher_step(
    model: nn.Module, batch: dict, cfg: TeacherTrainConfig, draws: Draws
) -> tuple[Tensor, dict[str, float]]:
    """Flow-matching loss of the bidirectional teacher on a batch {x0, cond}."""
    x0, cond = batch["x0"], batch["cond"]
    cond = drop_conditions(cond, cfg.all_drop, cfg.audio_drop, draws)
    t = draw_times(draws, cfg.shift).to(x0)
    noise = draws.randn(x0.shape[1:]).to(x0)
    loss = flow_matching_loss(model, x0, t, noise, cond, mouth_weight(cond.mask, cfg.mouth_weight))
    return loss, {}


def time_set(cfg: DiffusionForcingConfig, causal: CausalConfig, schedule: ScheduleConfig) -> Tensor:
    """The per-chunk times Stage 1 draws from (see ``DiffusionForcingConfig.times``)."""
    taus = shifted_timesteps(schedule.num_steps, schedule.shift).float()
    grid = taus[list(causal.student_steps)]  # (J,)
    if cfg.times == "grid":
        return grid
    return torch.cat([grid.clamp(max=RELEASE_MAX_T), torch.zeros(1)])


def chunk_times(times: Tensor, num_frames: int, chunk: int, draws: Draws) -> Tensor:
    """Per-frame times (B, F): one value of ``times`` per chunk and sample."""
    chunks = -(-num_frames // chunk)
    pick = draws.randint(len(times), (chunks,))  # (B, chunks)
    return times[pick].repeat_interleave(chunk, dim=1)[:, :num_frames]


@contextmanager
def attention_window(model: nn.Module, window: tuple[int, int] | None) -> Iterator[None]:
    """Run ``model`` with the block-causal mask restricted to (sink, window) latent frames."""
    if window is None:
        yield
        return
    saved = model.cfg
    model.cfg = dataclasses.replace(saved, mask_window=tuple(window))
    try:
        yield
    finally:
        model.cfg = saved


def diffusion_forcing_step(
    model: nn.Module,
    batch: dict,
    cfg: DiffusionForcingConfig,
    causal: CausalConfig,
    schedule: ScheduleConfig,
    draws: Draws,
) -> tuple[Tensor, dict[str, float]]:
    """Stage 1 loss of the block-causal student on a batch {x0, cond}."""
    x0, cond = batch["x0"], batch["cond"]
    times = time_set(cfg, causal, schedule)
    t = chunk_times(times, x0.shape[2], causal.chunk_frames, draws).to(x0)  # (B, F)
    noise = draws.randn(x0.shape[1:]).to(x0)
    window = None
    if cfg.attention_windows:
        window = cfg.attention_windows[draws.shared_choice(len(cfg.attention_windows))]
    with attention_window(model, window):
        if cfg.loss == "velocity":
            loss = flow_matching_loss(model, x0, t, noise, cond)
        else:
            loss = x0_loss(model, x0, t, noise, cond)
    return loss, {"clean_chunks": float((t == 0).float().mean())}


def x0_loss(model: nn.Module, x0: Tensor, t: Tensor, noise: Tensor, cond: LipSyncCond) -> Tensor:
    """The release's Stage-1 loss 0.5 * mean (x0_pred - x0)^2 (= 0.5 t^2 times the velocity
    error), with x0_pred = x_t - t * velocity."""
    x_t = add_noise(x0, noise, t)
    x0_pred = x0_from_velocity(x_t, model(x_t, t, cond), t)
    return 0.5 * (x0_pred - x0).float().square().mean()
