"""Similarity alignment to the canonical face crop, temporal smoothing, and warping.

Design choices:
- The canonical 5-point template is InsightFace's ArcFace template for a 112x112 crop
  (left eye, right eye, nose tip, left and right mouth corner, in image coordinates) recentred,
  shrunk by ``TEMPLATE_SCALE`` and moved up by ``TEMPLATE_SHIFT_Y`` so the crop holds the whole
  face with margin: in a crop of side S the eyes sit near 0.415 S, the nose tip at 0.53 S, the
  mouth corners at 0.65 S and the chin near 0.8 S. The mouth mask (``MediaConfig.mouth_top``
  = 0.55) thus starts just below the nose tip.
- One similarity (rotation, uniform scale, translation) per frame, fitted by linear least
  squares to the five points (Umeyama without reflection; exact for five noise-free points).
- Smoothing is a zero-phase Gaussian filter over the four similarity parameters
  (a = s cos r, b = s sin r, tx, ty) with sigma = ``SMOOTH_FRAMES * smoothing`` frames; it has
  no lag because the track is computed offline before generation. The parameters are linear in
  the landmarks, so this equals smoothing the landmarks and refitting.
- Frames without a detection get parameters interpolated linearly between their neighbours
  (held constant before the first and after the last detection).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

# InsightFace ArcFace 5-point template, 112x112 crop (image-left eye first).
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)
TEMPLATE_SCALE = 0.65  # the template spans 65% of its ArcFace extent: full face + margin
TEMPLATE_SHIFT_Y = -0.06  # move the face up by 6% of the crop so the chin fits
SMOOTH_FRAMES = 3.0  # Gaussian sigma in frames at smoothing = 1
ANTIALIAS_SIGMA = 0.5  # low-pass sigma, in crop pixels, before shrinking a frame more than 2x


def canonical_template(crop_size: int) -> np.ndarray:
    """The 5 template points (5, 2) in pixels of a ``crop_size`` square crop."""
    unit = (ARCFACE_112 / 112.0 - 0.5) * TEMPLATE_SCALE + 0.5
    unit[:, 1] += TEMPLATE_SHIFT_Y
    return unit * crop_size


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity mapping ``src`` (N, 2) onto ``dst`` (N, 2); returns (2, 3)."""
    x, y = src[:, 0], src[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    # x' = a x - b y + tx ;  y' = b x + a y + ty
    rows = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
    a, b, tx, ty = np.linalg.lstsq(rows, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def to_params(transforms: np.ndarray) -> np.ndarray:
    """(T, 2, 3) similarities -> (T, 4) parameters (a, b, tx, ty)."""
    return np.stack(
        [transforms[:, 0, 0], transforms[:, 1, 0], transforms[:, 0, 2], transforms[:, 1, 2]], 1
    )


def from_params(params: np.ndarray) -> np.ndarray:
    """(T, 4) parameters -> (T, 2, 3) similarities."""
    a, b, tx, ty = params.T
    return np.stack([np.stack([a, -b, tx], 1), np.stack([b, a, ty], 1)], 1)


def fill_gaps(params: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Interpolate rows of ``params`` (T, P) where ``valid`` (T,) is False."""
    if valid.all() or not valid.any():
        return params.copy()
    t = np.arange(len(params))
    out = params.copy()
    for k in range(params.shape[1]):
        out[~valid, k] = np.interp(t[~valid], t[valid], params[valid, k])
    return out


def smooth_params(params: np.ndarray, smoothing: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing of (T, P) parameters over time."""
    sigma = SMOOTH_FRAMES * smoothing
    if sigma <= 0 or len(params) < 2:
        return params.copy()
    return gaussian_filter1d(params, sigma, axis=0, mode="nearest")


def transforms_from_landmarks(
    landmarks: np.ndarray, found: np.ndarray, crop_size: int, smoothing: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame frame -> crop similarities from 5-point landmarks.

    Args:
        landmarks: (T, 5, 2) pixel coordinates; rows where ``found`` is False are ignored.
        found: (T,) bool.

    Returns:
        (raw, smoothed) transforms, both (T, 2, 3) float64; gaps are interpolated in both.
    """
    template = canonical_template(crop_size)
    params = np.zeros((len(landmarks), 4))
    for i in np.flatnonzero(found):
        params[i] = to_params(fit_similarity(landmarks[i], template)[None])[0]
    params = fill_gaps(params, found)
    return from_params(params), from_params(smooth_params(params, smoothing))


def warp_to_crop(frames: np.ndarray, track, crop_size: int) -> np.ndarray:
    """Cut the aligned crops: frames (T, H, W, 3) uint8 -> (T, S, S, 3) uint8.

    ``track`` is a :class:`~lipforcing.media.faces.FaceTrack` (its ``transforms`` are used) or
    a (T, 2, 3) array of frame -> crop similarities. Where the crop shrinks the face by more
    than 2x (a 4K source), the frame is low-passed first so the crop does not alias.
    """
    transforms = np.asarray(getattr(track, "transforms", track), np.float64)
    out = np.empty((len(frames), crop_size, crop_size, 3), np.uint8)
    for i, (frame, m) in enumerate(zip(frames, transforms)):
        scale = np.sqrt(abs(np.linalg.det(m[:, :2])))  # crop pixels per frame pixel
        if scale < 0.5:
            frame = cv2.GaussianBlur(frame, (0, 0), sigmaX=ANTIALIAS_SIGMA / scale)
        out[i] = cv2.warpAffine(
            frame, m, (crop_size, crop_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
    return out


def map_points(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (..., 2) points."""
    return points @ transform[:, :2].T + transform[:, 2]


def invert(transform: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine."""
    return cv2.invertAffineTransform(np.asarray(transform, np.float64))


__all__ = [
    "ARCFACE_112",
    "canonical_template",
    "fill_gaps",
    "fit_similarity",
    "invert",
    "map_points",
    "smooth_params",
    "transforms_from_landmarks",
    "warp_to_crop",
]
