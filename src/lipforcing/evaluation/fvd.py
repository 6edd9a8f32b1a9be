"""Fréchet Video Distance (Unterthiner et al. 2018) with the Kinetics-400 I3D.

The protocol of the reference TF implementation (google-research ``frechet_video_distance``):
- each video is cut into consecutive, non-overlapping clips of ``CLIP_FRAMES`` = 16 frames (a
  shorter remainder is dropped); one clip is one sample;
- frames are resized to 224x224 with TF1 ``resize_bilinear`` (align_corners=False,
  half_pixel_centers=False: source = dest * in / out, no antialiasing), reimplemented exactly in
  :func:`tf_resize_bilinear`, then scaled ``2 x / 255 - 1``;
- the embedding is the 400-d logits of TF-Hub ``i3d-kinetics-400`` (``RGB/inception_i3d/Mean``).
  The common PyTorch port (StyleGAN-V's ``i3d_torchscript.pt``, called with
  ``return_features=True``) returns the same 400-d pre-softmax logits. ``layer="pool"`` gives
  the 1024-d pooled features instead (used by some later papers; not comparable);
- FVD = Fréchet distance of the Gaussians fitted to the pred and gt clip embeddings (all
  clips of all videos pooled), :func:`lipforcing.evaluation.fid.feature_distance`.
All in float32 (no fp16 anywhere).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lipforcing.errors import UserError
from lipforcing.evaluation.fid import feature_distance
from lipforcing.evaluation.i3d import load_i3d

CLIP_FRAMES = 16  # frames per FVD sample
SIZE = 224  # I3D input side


def _resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) linear-interpolation weights of TF1 resize_bilinear (legacy sampling)."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    m[torch.arange(n_out), lo] += 1 - frac
    m[torch.arange(n_out), hi] += frac
    return m


def tf_resize_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (..., H, W) to (..., size, size) as TF1 ``tf.image.resize_bilinear``."""
    ry = _resize_matrix(x.shape[-2], size).to(x.dtype)
    rx = _resize_matrix(x.shape[-1], size).to(x.dtype)
    return ry @ x @ rx.T


def clips(frames: np.ndarray, length: int = CLIP_FRAMES) -> np.ndarray:
    """(T, H, W, 3) -> (T // length, length, H, W, 3) consecutive non-overlapping clips."""
    n = len(frames) // length
    return np.asarray(frames[: n * length]).reshape(n, length, *np.shape(frames)[1:])


def i3d_input(clip: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, 3, T, 224, 224) float32 in [-1, 1]."""
    x = torch.from_numpy(np.asarray(clip)).permute(3, 0, 1, 2).float()  # (3, T, H, W)
    if x.shape[-2:] != (SIZE, SIZE):
        x = tf_resize_bilinear(x, SIZE)
    return (2 * x / 255 - 1)[None]


class FVDNet:
    """I3D clip embeddings of uint8 videos."""

    def __init__(self, path: str | Path | None = None, layer: str = "logits") -> None:
        if layer not in ("logits", "pool"):
            raise UserError(f"FVD layer must be 'logits' or 'pool', got {layer!r}")
        self.net, self.layer = load_i3d(path), layer

    @torch.no_grad()
    def features(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T // 16, 400) float64 embeddings (one per 16-frame clip)."""
        out = [self.net.features(i3d_input(c), self.layer) for c in clips(frames)]
        dim = 400 if self.layer == "logits" else 1024
        return torch.cat(out).double().numpy() if out else np.zeros((0, dim))


def fvd(pred_feats: list[np.ndarray], gt_feats: list[np.ndarray]) -> float:
    """FVD from per-video (n_clips, D) embeddings; needs >= 2 clips per side in total."""
    p, g = np.concatenate(pred_feats), np.concatenate(gt_feats)
    if len(p) < 2 or len(g) < 2:
        raise UserError(f"FVD needs >= 2 clips of {CLIP_FRAMES} frames per side, got {len(p)}")
    return feature_distance(p, g)


__all__ = ["CLIP_FRAMES", "FVDNet", "clips", "fvd", "i3d_input", "tf_resize_bilinear"]
