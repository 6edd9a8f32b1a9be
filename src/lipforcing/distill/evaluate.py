"""Held-out evaluation of the teacher (50 Euler steps, CFG) and the student (causal, 2 steps).

Both generate the mouth of the same held-out windows from the same seeded noise; outputs are
codec-decoded and compared with the ground-truth crops on the mouth mask (L1 in [0, 1] units,
PSNR) and scored by our SyncNet against the driving audio. FPS counts generated video frames
per second of generation including the codec decode, measured in the same process with the
device synchronised before and after the timed region. Noise comes from explicit CPU
generators seeded by ``seed``; the global RNG is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from lipforcing.config import PresetConfig
from lipforcing.diffusion.causal import rollout
from lipforcing.diffusion.samplers import euler_sample
from lipforcing.diffusion.schedules import ShiftedGrid

SyncFn = Callable[[Tensor, Tensor], Tensor]  # (video (B, 3, T, S, S) in [-1, 1], audio) -> (B,)


def mouth_metrics(video: Tensor, gt: Tensor, mask: Tensor) -> dict[str, float]:
    """L1 and PSNR on the mouth mask; video, gt (B, 3, T, S, S) in [-1, 1], mask (S, S)."""
    m = mask.to(video).view(1, 1, 1, *mask.shape)
    a, b = (video.clamp(-1, 1) + 1) / 2, (gt + 1) / 2
    n = m.expand_as(a).sum()
    l1 = float(((a - b).abs() * m).sum() / n)
    mse = float(((a - b).square() * m).sum() / n)
    return {"mouth_l1": l1, "mouth_psnr": 10 * torch.log10(torch.tensor(1.0 / mse)).item()}


@torch.no_grad()
def generate_teacher(teacher, cond, noise, preset: PresetConfig, cfg_scale: float) -> Tensor:
    s = preset.schedule
    return euler_sample(
        teacher,
        noise,
        cond,
        grid=ShiftedGrid.from_config(s),
        cfg_scale=cfg_scale,
        drop_mode=s.drop_mode,
    )


@torch.no_grad()
def generate_student(student, cond, noise, preset: PresetConfig, seed: int = 1) -> Tensor:
    """Causal two-call generation from ``noise``; re-noising draws from a CPU generator."""
    n = noise.shape[2] // preset.causal.chunk_frames
    s = preset.schedule
    return rollout(
        student,
        cond,
        n,
        preset.causal,
        ShiftedGrid.from_config(s),
        torch.Generator().manual_seed(seed),
        noise=noise,
    )


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so wall-clock time covers it (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(
    generate: Callable[[object, Tensor], Tensor],
    codec,
    batch: dict,
    gt: Tensor,
    mask: Tensor,
    sync_fn: SyncFn | None,
    seed: int = 0,
) -> dict[str, float]:
    """Generate + decode one batch, timed; mouth metrics and sync. ``gt`` uint8 (B, 3, T, S, S)."""
    x0 = batch["x0"]
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(x0)
    synchronize(x0.device)
    start = time.perf_counter()
    latents = generate(batch["cond"], noise)
    with torch.no_grad():
        video = codec.decode(latents).clamp(-1, 1)
    synchronize(video.device)
    seconds = time.perf_counter() - start
    gtf = gt.float() / 127.5 - 1
    video = video[:, :, : gtf.shape[2]]
    out = mouth_metrics(video, gtf, mask)
    out["fps"] = video.shape[0] * video.shape[2] / seconds
    out["seconds"] = seconds
    if sync_fn is not None:
        out["sync"] = float(sync_fn(video, batch["audio"]).mean())
    return out
