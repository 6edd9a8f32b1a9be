"""Sync-C / Sync-D / offset as syncnet_python defines them, and the SyncNet reward R.

Offset search (syncnet_python's ``calc_pdist`` + ``evaluate``): video window i (frames
i .. i + 4, 0.2 s at 25 fps) is compared with audio windows i + s for s in -vshift .. vshift
(vshift = 15); audio embeddings are zero-padded at both ends, as in the reference, and the
distance is ``||v - a + 1e-6||``. The per-shift distances are averaged over windows:

- Sync-D = min over shifts of the mean distance;
- Sync-C = median over shifts - Sync-D (confidence);
- offset = vshift - argmin = -s*, i.e. the NEGATED audio shift of the best match (syncnet_python's
  sign): audio delayed by k frames (the sound of frame i sits at audio frame i + k) gives -k.

The reward R (:func:`sync_confidence`) is the confidence AT SHIFT 0: median over shifts of the
mean distance minus the mean distance at shift 0, using only valid (unpadded) pairs because the
training windows are short (21 frames). It equals Sync-C when the best shift is 0 and is lower
(possibly negative) for out-of-sync mouths, so it rewards sync, not merely a clear mouth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lipforcing.errors import UserError
from lipforcing.evaluation.syncnet import WINDOW


@dataclass(frozen=True)
class SyncResult:
    sync_c: float  # confidence: median - min of the mean distances
    sync_d: float  # min over shifts of the mean distance
    offset: int  # vshift - argmin (syncnet_python's sign)
    distances: np.ndarray  # (2 vshift + 1,) mean distance per shift s = -vshift .. vshift


def as_video(frames) -> Tensor:
    """(T, H, W, 3) uint8 array/tensor -> (3, T, H, W) float in [-1, 1]; (3, T, H, W) float
    tensors pass through."""
    if isinstance(frames, Tensor) and frames.is_floating_point() and frames.shape[0] == 3:
        return frames.float()
    x = torch.as_tensor(np.array(frames))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise UserError(f"frames must be (T, H, W, 3) uint8, got shape {tuple(x.shape)}")
    return x.permute(3, 0, 1, 2).float() / 127.5 - 1.0


def shift_distances(v: Tensor, a: Tensor, vshift: int) -> Tensor:
    """(N, D), (N, D) -> (2 vshift + 1,) mean ``||v_i - a_{i+s} + 1e-6||`` over i, audio
    zero-padded at both ends (syncnet_python)."""
    n = v.shape[0]
    a_pad = torch.nn.functional.pad(a, (0, 0, vshift, vshift))  # (N + 2 vshift, D)
    idx = torch.arange(n)[:, None] + torch.arange(2 * vshift + 1)[None]  # (N, S)
    d = (v[:, None] - a_pad[idx] + 1e-6).norm(dim=-1)  # (N, S)
    return d.mean(0)


@torch.no_grad()
def sync_search(model, frames, audio, vshift: int = 15) -> SyncResult:
    """Offset search of one clip. ``frames``: (T, H, W, 3) uint8 aligned crops at 25 fps (or
    (3, T, S, S) in [-1, 1]); ``audio``: mono 16 kHz waveform, or (T, A) per-frame features for
    LipSyncNet."""
    video = as_video(frames)
    t = video.shape[1]
    if t < WINDOW:
        raise UserError(f"sync needs at least {WINDOW} frames, got {t}")
    param = next(model.parameters())
    v = model.video_windows(video.to(param))
    a = model.audio_windows(audio, t)
    n = min(len(v), len(a))
    if n < 1:
        raise UserError("the audio is shorter than one 0.2 s sync window")
    dist = shift_distances(v[:n].float(), a[:n].float(), vshift).cpu().numpy()
    best = int(dist.argmin())
    return SyncResult(
        sync_c=float(np.median(dist) - dist[best]),
        sync_d=float(dist[best]),
        offset=vshift - best,
        distances=dist,
    )


def sync_scores(model, frames, audio, vshift: int = 15) -> tuple[float, float, int]:
    """(Sync-C, Sync-D, offset) of one clip; see :func:`sync_search`."""
    r = sync_search(model, frames, audio, vshift)
    return r.sync_c, r.sync_d, r.offset


def valid_shift_distances(v: Tensor, a: Tensor, max_shift: int) -> Tensor:
    """(B, N, D), (B, N, D) -> (B, 2 max_shift + 1) mean distance over valid pairs only."""
    out = []
    n = v.shape[1]
    for s in range(-max_shift, max_shift + 1):
        lo, hi = max(0, -s), min(n, n - s)
        out.append((v[:, lo:hi] - a[:, lo + s : hi + s]).norm(dim=-1).mean(1))
    return torch.stack(out, dim=1)


@torch.no_grad()
def sync_confidence(model, video: Tensor, audio: Tensor, max_shift: int = 6) -> Tensor:
    """Reward R: median over shifts minus the distance at shift 0, per sample.

    Args:
        model: a LipSyncNet (embed_video / embed_audio).
        video: (B, 3, T, S, S) aligned crops in [-1, 1], T >= 5.
        audio: (B, T, A) per-video-frame log-mel windows (A = n_mels * 20).
        max_shift: shifts searched each side, capped at N - 1 for N = T - 4 windows.
    Returns:
        (B,) float32, no gradient.
    """
    b, _, t = video.shape[:3]
    n = t - WINDOW + 1
    if n < 1 or audio.shape[:2] != (b, t):
        raise UserError(
            f"sync_confidence: video {tuple(video.shape)} vs audio {tuple(audio.shape)}"
        )
    param = next(model.parameters())
    clips = video.to(param).unfold(2, WINDOW, 1).permute(0, 2, 1, 5, 3, 4)  # (B, N, 3, 5, S, S)
    v = model.embed_video(clips.flatten(0, 1)).view(b, n, -1)
    feats = audio[:, WINDOW // 2 : WINDOW // 2 + n].to(param)  # centre frame of each window
    a = model.embed_audio(feats.flatten(0, 1)).view(b, n, -1)
    k = min(max_shift, n - 1)
    dist = valid_shift_distances(v, a, k)  # (B, 2k + 1)
    return (dist.median(dim=1).values - dist[:, k]).float()


__all__ = [
    "SyncResult",
    "as_video",
    "shift_distances",
    "sync_confidence",
    "sync_scores",
    "sync_search",
    "valid_shift_distances",
]
