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

from dataclasses import dataclass

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


__all__ = ["Clip", "contrastive_loss", "offset_accuracy", "sample_batch"]
