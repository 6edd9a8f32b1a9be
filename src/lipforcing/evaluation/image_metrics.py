"""Per-frame SSIM and PSNR on uint8 RGB frames.

SSIM follows scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255, channel_axis=-1)``: an 11x11 Gaussian window
(sigma 1.5, truncated at 3.5 sigma), K1 = 0.01, K2 = 0.03, the SSIM map averaged over the
pixels at least 5 from the border (so the padding mode never matters), then over channels.
PSNR uses the MSE over all pixels and channels with peak 255.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from lipforcing.errors import UserError


def _gaussian(sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _frames(x) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (N, 3, H, W) float64."""
    t = torch.as_tensor(np.array(x), dtype=torch.float64)
    return t.reshape(-1, *t.shape[-3:]).permute(0, 3, 1, 2)


def _check(a, b) -> None:
    if np.shape(a) != np.shape(b):
        raise UserError(f"frame shapes differ: {np.shape(a)} vs {np.shape(b)}")


def _ssim_batch(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    g = _gaussian().numpy()
    r = len(g) // 2

    def blur(z):  # separable Gaussian (OpenCV, float64), valid region: pixels >= r from the border
        planes = z.reshape(-1, *z.shape[-2:])
        out = np.stack([cv2.sepFilter2D(p, cv2.CV_64F, g, g) for p in planes])
        return out.reshape(z.shape)[..., r:-r, r:-r]

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean(axis=(1, 2, 3))


def ssim(pred, gt, data_range: float = 255.0, batch: int = 2) -> np.ndarray:
    """Per-frame SSIM of (..., H, W, 3) frames (H, W >= 11) -> (N,) float64 (computed a few
    frames at a time so the float64 temporaries stay in cache)."""
    _check(pred, gt)
    x, y = _frames(pred).numpy(), _frames(gt).numpy()  # (N, 3, H, W) float64
    out = [
        _ssim_batch(
            np.ascontiguousarray(x[i : i + batch]),
            np.ascontiguousarray(y[i : i + batch]),
            data_range,
        )
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(out) if out else np.zeros(0)


def psnr(pred, gt, data_range: float = 255.0) -> np.ndarray:
    """Per-frame PSNR in dB of (..., H, W, 3) frames -> (N,); inf for identical frames."""
    _check(pred, gt)
    mse = ((_frames(pred) - _frames(gt)) ** 2).mean(dim=(1, 2, 3)).numpy()
    with np.errstate(divide="ignore"):
        return 10 * np.log10(data_range**2 / mse)


__all__ = ["psnr", "ssim"]
