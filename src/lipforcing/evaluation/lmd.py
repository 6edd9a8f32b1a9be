"""LMD: mouth landmark distance, a weight-free lip-sync proxy (Chen et al. 2018 style).

Points: dlib's 68-point model, mouth points 48-67 (20 points), fitted on the predicted AND the
ground-truth frame inside the SAME ground-truth face box (:mod:`lipforcing.evaluation.protocol`),
so detector jitter does not enter the distance.
Normalisation: both point sets are mapped into the ground truth's aligned face crop (the
per-frame similarity of the face track) and measured in pixels of a ``LMD_CROP`` = 256 px
crop. The crop fixes the face scale (eyes to mouth corners about 60 px), so LMD is comparable
across resolutions and face sizes; no per-frame centring is done, so a mouth that moves or
opens differently both count.
LMD of a video = mean over frames with a ground-truth face and over the 20 points of the
Euclidean point distance; 0 for identical videos, growing with temporal shift.
"""

from __future__ import annotations

import numpy as np

from lipforcing.errors import UserError
from lipforcing.media.align import map_points

LMD_CROP = 256  # px, side of the reference crop LMD is measured in


def mouth_distance(
    pred: np.ndarray, gt: np.ndarray, transforms: np.ndarray, crop_size: int
) -> np.ndarray:
    """Per-frame LMD.

    Args:
        pred, gt: (T, 20, 2) mouth points in frame pixels (NaN rows where not fitted).
        transforms: (T, 2, 3) frame -> crop similarities of the ground-truth track.
        crop_size: side of the crop the transforms map to.
    Returns:
        (T,) mean point distance in ``LMD_CROP``-pixel units, NaN where either side is NaN.
    """
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.shape[1:] != (20, 2) or len(transforms) != len(pred):
        raise UserError(f"LMD needs (T, 20, 2) points twice, got {pred.shape} vs {gt.shape}")
    scale = LMD_CROP / crop_size
    out = np.empty(len(pred))
    for i, (p, g, m) in enumerate(zip(pred, gt, transforms)):
        d = np.linalg.norm(map_points(p, m) - map_points(g, m), axis=-1)
        out[i] = d.mean() * scale
    return out


__all__ = ["LMD_CROP", "mouth_distance"]
