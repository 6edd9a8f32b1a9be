"""Rectified-flow time convention and the shifted-ODE grid.

The one time convention of this repository (spec section 3):

    x_t = (1 - t) * x_0 + t * noise,   t in [0, 1], t = 1 is pure noise,
    velocity v = noise - x_0,          x0_pred = x_t - t * v.

The sampling grid is Wan's shifted grid with N steps: s_j = 1 - j / N and
tau_j = shift * s_j / (1 + (shift - 1) * s_j), so tau_0 = 1 and tau_N = 0. Grid indices ``j``
are the paper's step numbers (the student calls at j = 0 and j = 30).

Design choice: the grid is one small object, :class:`ShiftedGrid`, derived once from the
preset's :class:`~lipforcing.config.ScheduleConfig` (``ShiftedGrid.from_config``) and passed
as data to every sampler; no function carries ``num_steps`` / ``shift`` defaults, so a preset
with another grid cannot be silently sampled on the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from lipforcing.config import ScheduleConfig


def shift_time(u: Tensor | float, shift: float) -> Tensor | float:
    """Warp a uniform time ``u`` in [0, 1] to the shifted time ``shift*u / (1 + (shift-1)*u)``."""
    return shift * u / (1 + (shift - 1) * u)


def unshift_time(t: Tensor | float, shift: float) -> Tensor | float:
    """Inverse of :func:`shift_time`."""
    return t / (shift - (shift - 1) * t)


def shifted_timesteps(num_steps: int, shift: float) -> Tensor:
    """The ``num_steps + 1`` grid values tau_0 = 1.0 ... tau_N = 0.0 (float64, CPU)."""
    if num_steps < 1:
        raise ValueError("num_steps must be >= 1")
    s = 1.0 - torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    return shift_time(s, shift)


@dataclass(frozen=True)
class ShiftedGrid:
    """Wan's shifted grid of ``num_steps`` steps: ``taus[j]`` = tau_j, tau_0 = 1, tau_N = 0."""

    num_steps: int  # N
    shift: float  # grid shift
    taus: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.shift <= 0:
            raise ValueError(f"grid shift must be > 0, got {self.shift}")
        object.__setattr__(
            self, "taus", tuple(shifted_timesteps(self.num_steps, self.shift).tolist())
        )

    @classmethod
    def from_config(cls, cfg: ScheduleConfig) -> ShiftedGrid:
        return cls(cfg.num_steps, cfg.shift)

    def tau(self, j: int) -> float:
        """tau_j as a Python float."""
        return self.taus[j]

    def times(self) -> Tensor:
        """All grid values, (N + 1,) float64."""
        return torch.tensor(self.taus, dtype=torch.float64)

    def index(self, t: Tensor | float) -> Tensor | float:
        """Continuous grid index j(t) with tau_{j(t)} = t; integer at the grid points."""
        return self.num_steps * (1 - unshift_time(t, self.shift))

    def nearest(self, t: float) -> int:
        """The grid index whose tau is closest to ``t``."""
        return int(round(float(self.index(t))))


def add_noise(x0: Tensor, noise: Tensor, t: Tensor | float) -> Tensor:
    """x_t = (1 - t) x_0 + t noise; a tensor ``t`` broadcasts from the batch axis."""
    t = _expand(t, x0)
    return (1 - t) * x0 + t * noise


def x0_from_velocity(x_t: Tensor, velocity: Tensor, t: Tensor | float) -> Tensor:
    """x0_pred = x_t - t * v."""
    return x_t - _expand(t, x_t) * velocity


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """The flow-matching regression target v = noise - x_0."""
    return noise - x0


def _expand(t: Tensor | float, like: Tensor) -> Tensor | float:
    """Broadcast a per-sample (B,) or per-frame (B, F) time over a (B, C, F, H, W) tensor."""
    if not isinstance(t, Tensor) or t.dim() == 0:
        return t
    t = t.to(like.dtype)
    if t.dim() == 1:  # (B,)
        return t.view(-1, *([1] * (like.dim() - 1)))
    if t.dim() == 2 and like.dim() == 5:  # (B, F) per latent frame
        return t[:, None, :, None, None]
    raise ValueError(f"cannot broadcast t of shape {tuple(t.shape)} over {tuple(like.shape)}")
