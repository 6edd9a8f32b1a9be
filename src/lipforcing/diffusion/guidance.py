"""Classifier-free guidance and the Sync-Window scale schedule (spec sections 3 and 7).

CFG: v = v_uncond + s * (v_cond - v_uncond). At s = 1 only the conditional branch runs. The
unconditional branch drops either everything (audio and reference) or the audio only.

Sync-Window CFG: during DMD the teacher is guided with ``window_scale`` only when t lies in the
sync-favouring band [tau_40, tau_20] = [0.556, 0.882] of the 50-step grid (the bounds are
derived from ``ScheduleConfig.window_steps``: ``window_lo`` / ``window_hi``), and is unguided
elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lipforcing.models.conditioning import LipSyncCond

ModelFn = Callable[..., Tensor]  # model(x_t, t, cond, **kwargs) -> velocity


def sync_window_scale(t: Tensor | float, lo: float, hi: float, scale: float) -> Tensor | float:
    """``scale`` where lo <= t <= hi, else 1.0; elementwise for a tensor ``t``."""
    if isinstance(t, Tensor):
        inside = (t >= lo) & (t <= hi)
        return torch.where(inside, torch.full_like(t, scale), torch.ones_like(t))
    return scale if lo <= t <= hi else 1.0


def guided_velocity(
    model: ModelFn,
    x_t: Tensor,
    t: Tensor,
    cond: LipSyncCond,
    scale: float | Tensor,
    drop_mode: str = "all",
    **model_kwargs,
) -> Tensor:
    """Velocity with CFG at ``scale``; one network call when every scale is 1.

    ``scale`` may be a per-sample tensor (B,) so a batch can mix guided and unguided samples
    (the Sync-Window teacher with per-sample DMD timesteps). Both branches run as one batch.
    """
    if isinstance(scale, float | int) and scale == 1.0:
        return model(x_t, t, cond, **model_kwargs)
    if isinstance(scale, Tensor) and bool((scale == 1.0).all()):
        return model(x_t, t, cond, **model_kwargs)
    both = model(
        torch.cat([x_t, x_t]), torch.cat([t, t]), cond.cat(cond.drop(drop_mode)), **model_kwargs
    )
    v_cond, v_uncond = both.chunk(2)
    if isinstance(scale, Tensor):
        scale = scale.to(x_t.dtype).view(-1, *([1] * (x_t.dim() - 1)))
    return v_uncond + scale * (v_cond - v_uncond)
