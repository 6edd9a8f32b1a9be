"""3-D rotary position embedding (RoPE) over (frame, height, width), as Wan 2.1 does it.

Facts from Wan 2.1 (``wan/modules/model.py``): a head of size ``d`` is split into rotary pairs
of adjacent channels (``x[..., 2i], x[..., 2i+1]``); the first ``d - 4 * (d // 6)`` channels
rotate with the latent-frame index, the next ``2 * (d // 6)`` with the patch row, the last
``2 * (d // 6)`` with the patch column. Each axis uses frequencies ``theta ** (-2i / d_axis)``.

Design choices:
- Frame positions are an explicit integer tensor, not ``arange(F)``: the KV cache rotates keys
  by their slot inside the cache (sink at 0, window after it), so a stream of any length stays
  in the trained position range.
- Angles and the rotation are computed in float32 and cast back to the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels of a head rotated by (frame, height, width) position."""
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def _inv_freq(dim: int, theta: float, device: torch.device) -> Tensor:
    return 1.0 / theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim)


@dataclass(frozen=True)
class Rotary:
    """cos/sin tables for a token sequence, each (L, head_dim / 2) float32."""

    cos: Tensor
    sin: Tensor

    @property
    def num_tokens(self) -> int:
        return self.cos.shape[0]


def rope_tables(
    frame_pos: Tensor, grid_hw: tuple[int, int], head_dim: int, theta: float = 10_000.0
) -> Rotary:
    """Rotation tables for tokens laid out frame-major as (frame, row, column).

    Args:
        frame_pos: integer position of each latent frame, (F,).
        grid_hw: patch rows and columns per frame (h, w).
        head_dim: attention head size d.
        theta: RoPE base.

    Returns:
        :class:`Rotary` with tables of shape (F * h * w, d / 2).
    """
    h, w = grid_hw
    dev = frame_pos.device
    d_f, d_h, d_w = axis_dims(head_dim)
    f_ang = frame_pos.to(torch.float64)[:, None] * _inv_freq(d_f, theta, dev)  # (F, d_f/2)
    h_ang = torch.arange(h, device=dev, dtype=torch.float64)[:, None] * _inv_freq(d_h, theta, dev)
    w_ang = torch.arange(w, device=dev, dtype=torch.float64)[:, None] * _inv_freq(d_w, theta, dev)
    n_f = frame_pos.shape[0]
    angles = torch.cat(
        [
            f_ang[:, None, None].expand(n_f, h, w, -1),
            h_ang[None, :, None].expand(n_f, h, w, -1),
            w_ang[None, None, :].expand(n_f, h, w, -1),
        ],
        dim=-1,
    ).reshape(n_f * h * w, head_dim // 2)
    return Rotary(angles.cos().float(), angles.sin().float())


def apply_rope(x: Tensor, rot: Rotary) -> Tensor:
    """Rotate adjacent channel pairs of ``x`` (B, L, H, d) by the tables of ``rot``."""
    xf = x.float().unflatten(-1, (-1, 2))  # (B, L, H, d/2, 2)
    x_even, x_odd = xf[..., 0], xf[..., 1]
    cos, sin = rot.cos[None, :, None], rot.sin[None, :, None]  # (1, L, 1, d/2)
    out = torch.stack([x_even * cos - x_odd * sin, x_even * sin + x_odd * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)
