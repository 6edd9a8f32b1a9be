"""Training of the tiny codec on preprocessed shards (aligned face crops).

Batches are random windows of ``1 + 4k`` frames from random shards, cut to random square
patches (the codec is fully convolutional; half of the patches sit on the lower face, where the
student works) and flipped at random. Loss: L1 + MSE of the reconstruction, plus a small L2 on
the latent; the decoder also sees slightly noised latents now and then, so it tolerates the
student's small errors. After training, per-channel latent mean / std are measured on the data
and stored in the codec (latents are normalised for the diffusion model).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lipforcing.codecs.base import Codec


@dataclass(frozen=True)
class CodecTrainConfig:
    steps: int = 2000
    batch: int = 8
    frames: int = 5  # 1 + 4k frames per window
    patch: int = 64  # side of the random training patch (multiple of 8)
    lr: float = 1e-3
    min_lr: float = 1e-4
    latent_l2: float = 1e-4
    latent_noise: float = 0.05  # std of decoder input noise, relative to the latent's std
    seed: int = 0
    save_every: int = 200  # optimiser steps between resumable state files


class CropWindows:
    """Random windows of aligned crops from shard folders (``crops.npy`` memory-mapped)."""

    def __init__(self, shard_dirs: list[Path], frames: int) -> None:
        self.crops = []
        for d in shard_dirs:
            c = np.load(d / "crops.npy", mmap_mode="r")
            if len(c) >= frames:
                self.crops.append(c)
        if not self.crops:
            raise ValueError(f"no shard has {frames} frames")
        self.frames = frames
        self.size = self.crops[0].shape[1]

    def sample(self, g: np.random.Generator, batch: int, patch: int) -> torch.Tensor:
        """(B, 3, T, patch, patch) float in [-1, 1]."""
        out = np.empty((batch, self.frames, patch, patch, 3), np.uint8)
        for b in range(batch):
            c = self.crops[int(g.integers(len(self.crops)))]
            t0 = int(g.integers(0, len(c) - self.frames + 1))
            cells = (self.size - patch) // 8
            x0 = 8 * int(g.integers(0, cells + 1))
            lower = g.random() < 0.5  # half of the patches on the lower face
            y0 = 8 * (cells if lower else int(g.integers(0, cells + 1)))
            win = c[t0 : t0 + self.frames, y0 : y0 + patch, x0 : x0 + patch]
            out[b] = win[:, :, ::-1] if g.random() < 0.5 else win
        video = torch.from_numpy(out).permute(0, 4, 1, 2, 3).float()
        return video / 127.5 - 1


def train_step(codec: Codec, video: torch.Tensor, cfg: CodecTrainConfig, g: torch.Generator):
    """One reconstruction step on raw (unnormalised) latents; returns (loss, metrics)."""
    x = video.transpose(1, 2)
    first = torch.cat([x[:, :1].expand(-1, 3, -1, -1, -1), x], 1)
    z = codec.encode_raw(first)
    z_in = z
    if cfg.latent_noise > 0 and torch.rand((), generator=g) < 0.5:
        noise = torch.randn(z.shape, generator=g) * cfg.latent_noise * z.detach().std()
        z_in = z + noise
    recon = codec.decode_raw(z_in)[:, 3:]
    l1 = (recon - x).abs().mean()
    mse = F.mse_loss(recon, x)
    loss = l1 + mse + cfg.latent_l2 * z.pow(2).mean()
    psnr = 10 * torch.log10(4.0 / mse.detach().clamp_min(1e-10))
    return loss, {"l1": float(l1.detach()), "psnr": float(psnr)}


def fit_codec(
    codec: Codec,
    data: CropWindows,
    cfg: CodecTrainConfig,
    state_path: str | Path | None = None,
    *,
    stop_at: int | None = None,
    desc: str = "codec",
    step_seconds: list[float] | None = None,
) -> list[dict]:
    """Train ``codec`` on random windows of ``data`` up to ``cfg.steps`` (or ``stop_at``).

    AdamW with a cosine decay from ``lr`` to ``min_lr``; gradients clipped to norm 1. The
    window draw of step k is a pure function of (seed, k) and the full state is written to
    ``state_path`` every ``save_every`` steps and at the end, so an interrupted run resumes
    exactly. Returns the metrics history (every 50 steps), resumed runs included.
    ``step_seconds`` gets each step's wall seconds (not the state writes) appended.
    """
    from tqdm import tqdm

    from lipforcing.distill.checkpointing import load_state, save_state

    codec.train()
    opt = torch.optim.AdamW(codec.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_factor(cfg, s))
    g = torch.Generator().manual_seed(cfg.seed)
    parts = {"models": {"codec": codec}, "optimizers": {"opt": opt}}
    parts |= {"schedulers": {"sched": sched}, "generators": {"g": g}}
    step, extra = 0, {}
    if state_path is not None and Path(state_path).is_file():
        step, extra = load_state(state_path, **parts)
    history = list(extra.get("history", []))
    end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
    bar = tqdm(range(step, end), desc=desc, initial=step, total=cfg.steps)
    for step in bar:
        tick = time.perf_counter()
        video = data.sample(np.random.default_rng([cfg.seed, step]), cfg.batch, cfg.patch)
        loss, metrics = train_step(codec, video, cfg, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), 1.0)
        opt.step()
        sched.step()
        if step_seconds is not None:
            step_seconds.append(time.perf_counter() - tick)
        bar.set_postfix(psnr=f"{metrics['psnr']:.1f}")
        done = step + 1
        if done % 50 == 0:
            history.append({"step": done, **metrics})
        if state_path is not None and (done % cfg.save_every == 0 or done == end):
            save_state(state_path, step=done, **parts, extra={"history": history})
    bar.close()
    return history


def cosine_factor(cfg: CodecTrainConfig, step: int) -> float:
    """Learning-rate multiplier at ``step``: cosine from 1 to ``min_lr / lr``."""
    cos = 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
    return (cfg.min_lr + (cfg.lr - cfg.min_lr) * cos) / cfg.lr


@torch.no_grad()
def set_latent_stats(codec: Codec, videos: list[torch.Tensor]) -> None:
    """Measure per-channel latent mean / std on ``videos`` and store them in the codec."""
    codec.latent_mean.zero_()
    codec.latent_std.fill_(1.0)
    z = torch.cat([codec.encode(v).transpose(0, 1).flatten(1) for v in videos], 1)  # (C, N)
    codec.latent_mean.copy_(z.mean(1))
    codec.latent_std.copy_(z.std(1).clamp_min(1e-4))


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays (peak 255)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


@torch.no_grad()
def reconstruct(codec: Codec, crops: np.ndarray, frames: int = 21) -> np.ndarray:
    """Encode and decode ``crops (T, S, S, 3)`` uint8 in windows of ``frames``; uint8 out."""
    out = []
    t = (len(crops) - 1) // 4 * 4 + 1
    t = min(t, len(crops))
    for s in range(0, t - frames + 1, frames):
        v = torch.from_numpy(np.array(crops[s : s + frames])).float() / 127.5 - 1
        rec = codec.decode(codec.encode(v.permute(3, 0, 1, 2)[None]))[0]
        rec = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()
        out.append(rec)
    return np.concatenate(out) if out else np.zeros((0,) + crops.shape[1:], np.uint8)


def evaluate_shards(codec: Codec, shard_dirs: list[Path], mask: np.ndarray | None = None) -> dict:
    """PSNR of whole-clip reconstruction per shard (frames used: whole 21-frame windows)."""
    rows = {}
    for d in shard_dirs:
        crops = np.load(d / "crops.npy", mmap_mode="r")
        rec = reconstruct(codec, crops)
        gt = np.asarray(crops[: len(rec)])
        row = {"frames": len(rec), "psnr": psnr_uint8(rec, gt)}
        if mask is not None:
            m = mask > 0.5
            row["psnr_mouth"] = psnr_uint8(rec[:, m], gt[:, m])
        rows[d.name] = row
    valid = [r for r in rows.values() if r["frames"]]
    summary = {
        "psnr": float(np.mean([r["psnr"] for r in valid])) if valid else float("nan"),
        "clips": rows,
    }
    if mask is not None and valid:
        summary["psnr_mouth"] = float(np.mean([r["psnr_mouth"] for r in valid]))
    return summary


def recon_sheet(codec: Codec, crops: np.ndarray, path: Path, columns: int = 8) -> None:
    """PNG: original crops (top) and reconstructions (bottom) over time."""
    import cv2

    rec = reconstruct(codec, crops)
    picks = np.linspace(0, len(rec) - 1, columns).round().astype(int)
    top = np.concatenate([crops[i] for i in picks], 1)
    bottom = np.concatenate([rec[i] for i in picks], 1)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate([top, bottom], 0), cv2.COLOR_RGB2BGR))


__all__ = [
    "CodecTrainConfig",
    "CropWindows",
    "cosine_factor",
    "evaluate_shards",
    "fit_codec",
    "psnr_uint8",
    "recon_sheet",
    "reconstruct",
    "set_latent_stats",
    "train_step",
]
