"""The Tiny AutoEncoder for Hunyuan/Wan video latents (TAEHV): building blocks and the official
layout, written from the published architecture.

A TAEHV is two ``nn.Sequential`` stacks of frame-wise 2-D convolutions and three video blocks:

- ``MemBlock``: convolves each frame concatenated with the previous frame's input (causal
  memory of one frame; zeros before the first frame);
- ``TPool(n, s)``: merges ``s`` consecutive frames (channel concat + 1x1 convolution);
- ``TGrow(n, s)``: splits each frame into ``s`` frames (1x1 convolution + reshape).

Because the only temporal state is the last input frame of each ``MemBlock``, running a stack
chunk by chunk with that state carried gives exactly the whole-clip result, which is what the
streaming encoder and decoder do. Parameter names follow the official checkpoints
(``encoder.<i>...``, ``decoder.<i>...``), so ``taew2_1.pth`` / ``.safetensors`` load by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


def conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of the latent to (-3, 3) before decoding."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """Residual block that sees the current frame and the previous frame's input."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            conv(n_in * 2, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out)
        )
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: Tensor, past: Tensor) -> Tensor:
        return self.act(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TPool(nn.Module):
    """``stride`` frames -> 1 frame."""

    def __init__(self, n_f: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f * stride, n_f, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C, H, W) -> (B, T / s, C, H, W)
        b, t, c, h, w = x.shape
        s = self.stride
        if t % s:
            raise ValueError(f"TPool({s}) got {t} frames")
        # Equal to the 1x1 convolution of (B T/s, s C, H, W), done as one matmul over
        # channels-last pixels (much faster on the CPU than an NCHW 1x1 convolution).
        pixels = x.reshape(b, t // s, s, c, h, w).permute(0, 1, 4, 5, 2, 3).reshape(-1, s * c)
        y = F.linear(pixels, self.conv.weight.flatten(1))
        return y.view(b, t // s, h, w, c).permute(0, 1, 4, 2, 3)


class TGrow(nn.Module):
    """1 frame -> ``stride`` frames."""

    def __init__(self, n_f: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f, n_f * stride, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C, H, W) -> (B, T s, C, H, W)
        b, t, c, h, w = x.shape
        s = self.stride
        # The 1x1 convolution to s C channels, channel k C + i becoming channel i of frame
        # t s + k, as a matmul over channels-last pixels.
        y = F.linear(x.permute(0, 1, 3, 4, 2), self.conv.weight.flatten(1))  # (B, T, H, W, sC)
        y = y.view(b, t, h, w, s, c).permute(0, 1, 4, 2, 3, 5).contiguous()  # (B,T,s,H,W,C)
        return y.view(b, t * s, h, w, c).permute(0, 1, 4, 2, 3)


def run_stack(stack: nn.Sequential, x: Tensor, memory: dict[int, Tensor] | None = None) -> Tensor:
    """Apply ``stack`` to video ``x (B, T, C, H, W)``.

    ``memory`` maps each MemBlock's index to the last input frame it saw in a previous call
    (updated in place); ``None`` starts from zeros and keeps nothing. Frame-wise layers see
    ``B * T`` images at once.
    """
    for i, layer in enumerate(stack):
        if isinstance(layer, MemBlock):
            b, t = x.shape[:2]
            first = memory.get(i) if memory is not None else None
            if first is None:
                first = torch.zeros_like(x[:, :1])
            past = torch.cat([first, x[:, :-1]], 1)
            if memory is not None:
                memory[i] = x[:, -1:].detach()
            x = layer(_frames(x), _frames(past)).unflatten(0, (b, t))
        elif isinstance(layer, (TPool, TGrow)):
            x = layer(x)
        else:
            b, t = x.shape[:2]
            x = layer(_frames(x)).unflatten(0, (b, t))
    return x


def _frames(x: Tensor) -> Tensor:
    """(B, T, C, H, W) -> (B T, C, H, W) channels-last."""
    return x.flatten(0, 1).contiguous(memory_format=torch.channels_last)


def taehv_encoder(latent_channels: int = 16, width: int = 64, patch: int = 1) -> nn.Sequential:
    """The official TAEHV encoder: 8x space (three stride-2 convolutions), 4x time (two
    ``TPool(2)``; the third pool has stride 1), three MemBlocks per level."""
    n = width
    return nn.Sequential(
        conv(3 * patch**2, n),
        nn.ReLU(),
        TPool(n, 2),
        conv(n, n, stride=2, bias=False),
        MemBlock(n, n),
        MemBlock(n, n),
        MemBlock(n, n),
        TPool(n, 2),
        conv(n, n, stride=2, bias=False),
        MemBlock(n, n),
        MemBlock(n, n),
        MemBlock(n, n),
        TPool(n, 1),
        conv(n, n, stride=2, bias=False),
        MemBlock(n, n),
        MemBlock(n, n),
        MemBlock(n, n),
        conv(n, latent_channels),
    )


def taehv_decoder(
    latent_channels: int = 16, widths: tuple[int, ...] = (256, 128, 64, 64), patch: int = 1
) -> nn.Sequential:
    """The official TAEHV decoder: three 2x upsamplings, time grown by 2 at the last two."""
    n = widths
    return nn.Sequential(
        Clamp(),
        conv(latent_channels, n[0]),
        nn.ReLU(),
        MemBlock(n[0], n[0]),
        MemBlock(n[0], n[0]),
        MemBlock(n[0], n[0]),
        nn.Upsample(scale_factor=2),
        TGrow(n[0], 1),
        conv(n[0], n[1], bias=False),
        MemBlock(n[1], n[1]),
        MemBlock(n[1], n[1]),
        MemBlock(n[1], n[1]),
        nn.Upsample(scale_factor=2),
        TGrow(n[1], 2),
        conv(n[1], n[2], bias=False),
        MemBlock(n[2], n[2]),
        MemBlock(n[2], n[2]),
        MemBlock(n[2], n[2]),
        nn.Upsample(scale_factor=2),
        TGrow(n[2], 2),
        conv(n[2], n[3], bias=False),
        nn.ReLU(),
        conv(n[3], 3 * patch**2),
    )


def tiny_encoder(latent_channels: int = 16, width: int = 32) -> nn.Sequential:
    """The CPU-scale member of the family: space-to-depth first (no full-resolution
    convolution), one MemBlock at 1/4 and two at 1/8 resolution; same 4x8x8 strides."""
    w = width
    return nn.Sequential(
        nn.PixelUnshuffle(2),
        conv(12, w * 3 // 4),
        nn.ReLU(),
        TPool(w * 3 // 4, 2),
        conv(w * 3 // 4, w, stride=2, bias=False),
        MemBlock(w, w),
        TPool(w, 2),
        conv(w, w * 3 // 2, stride=2, bias=False),
        MemBlock(w * 3 // 2, w * 3 // 2),
        MemBlock(w * 3 // 2, w * 3 // 2),
        conv(w * 3 // 2, latent_channels),
    )


def tiny_decoder(latent_channels: int = 16, width: int = 32) -> nn.Sequential:
    """Decoder of the tiny codec: MemBlocks at 1/8 and 1/4 resolution, time grown by 2 at 1/4
    and 1/2 resolution, depth-to-space at the end (no full-resolution convolution)."""
    w = width
    return nn.Sequential(
        Clamp(),
        conv(latent_channels, 2 * w),
        nn.ReLU(),
        MemBlock(2 * w, 2 * w),
        MemBlock(2 * w, 2 * w),
        nn.Upsample(scale_factor=2),
        TGrow(2 * w, 2),
        conv(2 * w, w, bias=False),
        MemBlock(w, w),
        nn.Upsample(scale_factor=2),
        TGrow(w, 2),
        conv(w, w * 3 // 4, bias=False),
        nn.ReLU(),
        conv(w * 3 // 4, 12),
        nn.PixelShuffle(2),
    )


def pixel_patch(x: Tensor, patch: int) -> Tensor:
    """(B, T, 3, H, W) -> (B, T, 3 p^2, H/p, W/p) (Wan 2.2 style patching; p = 1: unchanged)."""
    if patch == 1:
        return x
    b, t = x.shape[:2]
    return F.pixel_unshuffle(x.flatten(0, 1), patch).unflatten(0, (b, t))


def pixel_unpatch(x: Tensor, patch: int) -> Tensor:
    if patch == 1:
        return x
    b, t = x.shape[:2]
    return F.pixel_shuffle(x.flatten(0, 1), patch).unflatten(0, (b, t))


__all__ = [
    "Clamp",
    "MemBlock",
    "TGrow",
    "TPool",
    "pixel_patch",
    "pixel_unpatch",
    "run_stack",
    "taehv_decoder",
    "taehv_encoder",
    "tiny_decoder",
    "tiny_encoder",
]
