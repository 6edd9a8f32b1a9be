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

The release's alignment (``MediaConfig.align = "latentsync3"``, LatentSync's ``AlignRestore``
with 3 points): the image-left and image-right eyebrow centres and the nose centre are fitted
to the template (17, 20), (58, 20), (37.5, 40) x 2.8 S / 256 on a canvas of (75, 100) x
2.8 S / 256 pixels (w, h) by Procrustes with the scale set to the ratio of the point sets'
standard deviations, and the canvas is then resized to S x S (an anisotropic stretch, so the
frame -> crop map is an affine, not a similarity). Smoothing acts on the similarity before the
stretch. Our 68-point landmarks stand in for InsightFace's 106 (eyebrows: dlib 17-21 and 22-26;
nose centre: the mean of dlib 30, 31, 33 and 35); LatentSync's extra "bias" term on the
translation is not reproduced (the Gaussian smoothing plays its role).
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
LATENTSYNC_256 = np.array([[17.0, 20.0], [58.0, 20.0], [37.5, 40.0]])  # AlignRestore(3), 256 px
LATENTSYNC_RATIO = 2.8 / 256  # template and canvas scale per crop pixel
LATENTSYNC_CANVAS = (75, 100)  # (w, h) of the warped face before the resize to S x S
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


def alignment_points(points68: np.ndarray, align: str = "arcface5") -> np.ndarray:
    """(..., 68, 2) dlib landmarks -> the points ``align`` fits: (..., 5, 2) or (..., 3, 2)."""
    if align == "latentsync3":
        return np.stack(
            [
                points68[..., 17:22, :].mean(-2),
                points68[..., 22:27, :].mean(-2),
                points68[..., [30, 31, 33, 35], :].mean(-2),
            ],
            -2,
        )
    return np.stack(
        [
            points68[..., 36:42, :].mean(-2),
            points68[..., 42:48, :].mean(-2),
            points68[..., 30, :],
            points68[..., 48, :],
            points68[..., 54, :],
        ],
        -2,
    )


def latentsync_canvas(crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(template (3, 2) on the canvas, stretch (2, 2) canvas -> crop) for a crop of side S."""
    ratio = LATENTSYNC_RATIO * crop_size
    w, h = (int(d * ratio) for d in LATENTSYNC_CANVAS)
    return LATENTSYNC_256 * ratio, np.diag([crop_size / w, crop_size / h])


def fit_procrustes(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Similarity ``src`` -> ``dst`` with the rotation of Procrustes and scale std(dst)/std(src)."""
    cs, cd = src.mean(0), dst.mean(0)
    s_src, s_dst = (src - cs).std(ddof=1), (dst - cd).std(ddof=1)
    u, _, vt = np.linalg.svd(((src - cs) / s_src).T @ ((dst - cd) / s_dst))
    r = vt.T @ u.T
    if np.linalg.det(r) < 0:
        vt[-1] *= -1
        r = vt.T @ u.T
    sr = (s_dst / s_src) * r
    return np.concatenate([sr, (cd - sr @ cs)[:, None]], 1)


def transforms_from_landmarks(
    landmarks: np.ndarray,
    found: np.ndarray,
    crop_size: int,
    smoothing: float,
    align: str = "arcface5",
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame frame -> crop transforms from alignment landmarks.

    Args:
        landmarks: (T, K, 2) pixel coordinates: K = 5 (arcface5), K = 3 (latentsync3) or
            K = 68 (dlib points, reduced by :func:`alignment_points`); rows where ``found`` is
            False are ignored.
        found: (T,) bool.
        align: ``"arcface5"`` (similarity onto the ArcFace template) or ``"latentsync3"``.

    Returns:
        (raw, smoothed) transforms, both (T, 2, 3) float64; gaps are interpolated in both.
    """
    if landmarks.shape[1] == 68:
        landmarks = alignment_points(landmarks, align)
    want = 3 if align == "latentsync3" else 5
    if landmarks.shape[1] != want:
        raise ValueError(f"{align} alignment needs {want} (or 68) landmarks per frame")
    if align == "latentsync3":
        template, stretch = latentsync_canvas(crop_size)
        fit = fit_procrustes
    else:
        template, stretch, fit = canonical_template(crop_size), None, fit_similarity
    params = np.zeros((len(landmarks), 4))
    for i in np.flatnonzero(found):
        params[i] = to_params(fit(landmarks[i], template)[None])[0]
    params = fill_gaps(params, found)
    raw, smooth = from_params(params), from_params(smooth_params(params, smoothing))
    if align == "latentsync3":  # the canvas is resized to S x S
        return stretch @ raw, stretch @ smooth
    return raw, smooth


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
    "alignment_points",
    "fit_procrustes",
    "latentsync_canvas",
    "canonical_template",
    "fill_gaps",
    "fit_similarity",
    "invert",
    "map_points",
    "smooth_params",
    "transforms_from_landmarks",
    "warp_to_crop",
]
