"""Flow-matching losses (rectified flow, t = 1 is noise; see :mod:`.schedules`).

The network regresses the velocity ``v = noise - x_0`` at ``x_t = (1 - t) x_0 + t noise``. The
loss is a mean squared error over latent elements, optionally up-weighted inside the mouth
mask (ours: the teacher's only job is the masked region; the rest is given as context).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lipforcing.diffusion.schedules import add_noise, shift_time, velocity_target


def sample_shifted_t(
    batch: int, shift: float, generator: torch.Generator | None, lo: float = 0.0, hi: float = 1.0
) -> Tensor:
    """t = shift(u), u ~ U[lo, hi] (Wan's shifted sampling; the DMD time q(t)), (B,) float32."""
    u = lo + (hi - lo) * torch.rand(batch, generator=generator)
    return shift_time(u, shift)


def flow_matching_loss(
    model,
    x0: Tensor,
    t: Tensor,
    noise: Tensor,
    cond,
    weight: Tensor | None = None,
) -> Tensor:
    """Mean weighted ||model(x_t, t, c) - (noise - x0)||^2.

    Args:
        model: ``model(x_t, t, cond) -> velocity``.
        x0: clean latents (B, C, F, h, w).
        t: (B,) or per-frame (B, F) times.
        noise: (B, C, F, h, w).
        cond: :class:`LipSyncCond` of the batch.
        weight: optional per-element weight broadcastable to x0 (e.g. the mouth mask).
    """
    x_t = add_noise(x0, noise, t)
    err = (model(x_t, t.to(x0), cond) - velocity_target(x0, noise)).float().square()
    if weight is None:
        return err.mean()
    weight = weight.to(err).expand_as(err)
    return (err * weight).sum() / weight.sum()


def mouth_weight(mask: Tensor, mouth_weight: float) -> Tensor | None:
    """1 outside the latent mouth mask (B, 1, F, h, w), ``mouth_weight`` inside; None if 1."""
    if mouth_weight == 1.0:
        return None
    return 1.0 + (mouth_weight - 1.0) * mask
