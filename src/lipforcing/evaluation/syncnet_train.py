"""Contrastive training of our LipSyncNet on preprocessed shards, and its offset accuracy.

Design choices:
- A sample is a 5-frame window of one shard (all frames with a face) and the per-frame audio
  feature of its centre frame (``audio_features.npy``, log-mel n_mels x 20 steps).
- Negatives: the other samples' audio in the batch (other clips / other times) and, for each
  sample, ``shifts`` audio features of the SAME clip shifted by 2 .. 8 frames either way
  (offset negatives, which teach timing rather than identity). Loss: cross-entropy of the
  scaled cosine similarities with the true audio as the target (InfoNCE).
- Held-out accuracy: on 2 s segments of held-out shards, the audio features are shifted by
  k frames (``a'[j] = a[j + k]``) and the offset search must report ``offset == k``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lipforcing.evaluation.sync import sync_search
from lipforcing.evaluation.syncnet import WINDOW, LipSyncNet

HALF = WINDOW // 2
MAX_NEG_SHIFT = 8  # frames; offset negatives are drawn from 2 .. MAX_NEG_SHIFT either way


@dataclass
class Clip:
    """One shard in memory: crops (T, S, S, 3) uint8, features (T, A), usable centre frames."""

    crops: np.ndarray
    feats: np.ndarray
    centres: np.ndarray

    @classmethod
    def from_arrays(cls, arrays: dict) -> Clip:
        crops, feats = np.asarray(arrays["crops"]), np.asarray(arrays["audio_features"])
        found = np.asarray(arrays.get("found", np.ones(len(crops), bool)))
        t = min(len(crops), len(feats))
        ok = np.convolve(found[:t].astype(int), np.ones(WINDOW, int), "valid") == WINDOW
        centres = np.nonzero(ok)[0] + HALF
        margin = (centres >= MAX_NEG_SHIFT) & (centres < t - MAX_NEG_SHIFT)
        return cls(crops[:t], feats[:t].astype(np.float32), centres[margin])


def sample_batch(clips: list[Clip], batch: int, shifts: int, rng: np.random.Generator) -> dict:
    """``video`` (B, 3, 5, S, S) in [-1, 1], ``audio`` (B, A), ``neg`` (B, shifts, A)."""
    usable = [c for c in clips if len(c.centres)]
    video, audio, neg = [], [], []
    for _ in range(batch):
        c = usable[rng.integers(len(usable))]
        f = int(rng.choice(c.centres))
        video.append(c.crops[f - HALF : f + HALF + 1])
        audio.append(c.feats[f])
        mags = rng.integers(2, MAX_NEG_SHIFT + 1, shifts) * rng.choice([-1, 1], shifts)
        neg.append(c.feats[f + mags])
    v = torch.from_numpy(np.stack(video)).float().permute(0, 4, 1, 2, 3) / 127.5 - 1.0
    return {
        "video": v,
        "audio": torch.from_numpy(np.stack(audio)),
        "neg": torch.from_numpy(np.stack(neg)),
    }


def contrastive_loss(model: LipSyncNet, batch: dict) -> tuple[Tensor, dict]:
    """InfoNCE over in-batch audio + same-clip shifted audio. Returns (loss, metrics)."""
    v = model.embed_video(batch["video"])  # (B, D)
    a = model.embed_audio(batch["audio"])  # (B, D)
    b, m = batch["neg"].shape[:2]
    n = model.embed_audio(batch["neg"].flatten(0, 1)).view(b, m, -1)  # (B, M, D)
    scale = model.logit_scale.exp().clamp(max=100)
    logits = scale * torch.cat([v @ a.T, torch.einsum("bd,bmd->bm", v, n)], dim=1)
    target = torch.arange(b)
    loss = F.cross_entropy(logits, target)
    acc = (logits.argmax(1) == target).float().mean()
    return loss, {"loss": loss.item(), "acc": acc.item(), "scale": scale.item()}


@dataclass(frozen=True, kw_only=True)
class SyncNetTrainConfig:
    """Contrastive training of :class:`LipSyncNet` (one-cycle AdamW)."""

    steps: int = 1500  # optimiser steps
    batch: int = 32  # windows per step
    shifts: int = 4  # same-clip offset negatives per window
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    warmup: float = 0.1  # share of the steps spent warming up
    seed: int = 0
    save_every: int = 250  # steps between resumable state files


def train_syncnet(
    model: LipSyncNet,
    clips: list[Clip],
    cfg: SyncNetTrainConfig,
    state_path: str | Path | None = None,
    *,
    stop_at: int | None = None,
    desc: str = "syncnet",
    step_seconds: list[float] | None = None,
) -> dict:
    """Train ``model`` in place on windows of ``clips`` up to ``cfg.steps`` (or ``stop_at``);
    returns the last step's metrics.

    The batch of step k is a pure function of (seed, k); with ``state_path`` the state is saved
    every ``save_every`` steps and at the end, and a rerun resumes from it exactly.
    ``step_seconds`` gets each step's wall seconds (not the state writes) appended.
    """
    from tqdm import tqdm

    from lipforcing.distill.checkpointing import load_state, save_state

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, cfg.lr, total_steps=cfg.steps, pct_start=cfg.warmup
    )
    parts = {"models": {"net": model}, "optimizers": {"opt": opt}, "schedulers": {"s": sched}}
    step = 0
    if state_path is not None and Path(state_path).is_file():
        step, _ = load_state(state_path, **parts)
    metrics: dict = {}
    end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
    bar = tqdm(range(step, end), desc=desc, initial=step, total=cfg.steps)
    for step in bar:
        tick = time.perf_counter()
        model.train()
        rng = np.random.default_rng([cfg.seed, step])
        loss, metrics = contrastive_loss(model, sample_batch(clips, cfg.batch, cfg.shifts, rng))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step_seconds is not None:
            step_seconds.append(time.perf_counter() - tick)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['acc']:.2f}")
        done = step + 1
        if state_path is not None and (done % cfg.save_every == 0 or done == end):
            save_state(state_path, step=done, **parts)
    bar.close()
    return metrics


@torch.no_grad()
def offset_accuracy(
    model: LipSyncNet, clips: list[Clip], shifts=(-4, -2, 0, 2, 4), seconds: float = 2.0
) -> dict:
    """Fraction of held-out segments whose detected offset equals the applied shift k."""
    model.eval()
    seg = int(round(seconds * 25))
    hits, total = 0, 0
    for c in clips:
        t = len(c.crops)
        for start in range(max(map(abs, shifts)), t - seg - max(map(abs, shifts)), seg):
            for k in shifts:
                feats = c.feats[start + k : start + k + seg]
                if len(feats) < seg:
                    continue
                r = sync_search(model, c.crops[start : start + seg], feats, vshift=8)
                hits += int(r.offset == k)
                total += 1
    return {"offset_accuracy": hits / max(total, 1), "segments": total}


__all__ = [
    "Clip",
    "SyncNetTrainConfig",
    "contrastive_loss",
    "offset_accuracy",
    "sample_batch",
    "train_syncnet",
]
