"""Paste a generated crop back into the original frame.

Design choices:
- The crop and the feathered mouth mask are warped to the frame with the inverse of the
  frame -> crop similarity (``cv2.warpAffine`` with ``WARP_INVERSE_MAP``); the frame is blended
  as ``frame + alpha * (crop - frame)`` in float32, so pixels where alpha is 0 (everything
  outside the mouth region) come back bit-exact, and no fp16 colour shift can creep in.
- Optional colour matching (``MediaConfig.color_match``) moves the generated crop's mean and
  standard deviation in CIE Lab, per channel, to those of the source crop on the ring of the
  mouth region where the blend is partial (the seam), before blending.
- Only the bounding box of the warped mask is processed, so paste-back costs little on large
  frames.
- ``MediaConfig.paste = "crop"`` pastes the whole generated crop instead, as the release's
  ``--composite_full_face`` does (its default blends the mouth region only, as ``"mouth"``):
  LatentSync's AlignRestore edge, computed in frame pixels: the crop's footprint (a warped
  square of ones) eroded by 2 x 2, then by 2w x 2w with w = sqrt(its area) // 20, blurred with
  a Gaussian of 2w + 1 taps, sigma = 0.3 ((2w + 1 - 1) / 2 - 1) + 0.8, and the crop enters as
  ``soft * footprint * crop + (1 - soft) * frame``. Colour matching then compares the whole
  crop.
- Frames without a usable face are not pasted at all (the frame is returned as it came, bit
  for bit). Next to them the patch fades: :func:`paste_weights` gives each frame a strength
  that ramps over ``FADE_FRAMES`` frames from the edge of a face run, and ``paste_back``
  scales the blend mask by it. Detector misses of up to ``BRIDGE_FRAMES`` frames between
  found frames of one shot are bridged (the face is there; its transform is interpolated), so
  a single missed detection does not flash the original mouth.
"""

from __future__ import annotations

import cv2
import numpy as np

from lipforcing.config import MediaConfig
from lipforcing.errors import UserError
from lipforcing.media.mask import blend_mask

FADE_FRAMES = 4  # frames over which the mouth patch fades in / out next to faceless frames
BRIDGE_FRAMES = 2  # detector misses up to this long inside a face run count as found


def _region(alpha_box: np.ndarray, transform: np.ndarray, frame_hw: tuple[int, int]):
    """Integer frame box (x0, y0, x1, y1) holding the warped crop-space box ``alpha_box``."""
    inv = cv2.invertAffineTransform(transform)
    x0, y0, x1, y1 = alpha_box
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], float)
    pts = corners @ inv[:, :2].T + inv[:, 2]
    h, w = frame_hw
    lo = np.floor(pts.min(0)).astype(int) - 2
    hi = np.ceil(pts.max(0)).astype(int) + 2
    return max(lo[0], 0), max(lo[1], 0), min(hi[0], w), min(hi[1], h)


def color_match(crop: np.ndarray, reference: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Match crop's per-channel Lab mean/std to ``reference`` where ``weight`` > 0.

    Args:
        crop, reference: (S, S, 3) float32 RGB in [0, 255].
        weight: (S, S) float32 weights of the pixels whose statistics are compared.
    """
    lab_c = cv2.cvtColor(crop / 255.0, cv2.COLOR_RGB2Lab)
    lab_r = cv2.cvtColor(reference / 255.0, cv2.COLOR_RGB2Lab)
    w = weight[..., None] / max(float(weight.sum()), 1e-6)
    mean_c, mean_r = (lab_c * w).sum((0, 1)), (lab_r * w).sum((0, 1))
    std_c = np.sqrt(((lab_c - mean_c) ** 2 * w).sum((0, 1))) + 1e-3
    std_r = np.sqrt(((lab_r - mean_r) ** 2 * w).sum((0, 1)))
    lab = (lab_c - mean_c) * (std_r / std_c) + mean_r
    return np.clip(cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB) * 255.0, 0, 255)


def paste_weights(
    found: np.ndarray,
    cuts: np.ndarray | None = None,
    fade: int = FADE_FRAMES,
    bridge: int = BRIDGE_FRAMES,
) -> np.ndarray:
    """Per-frame paste strength in [0, 1]: 0 without a face, ramping up over ``fade`` frames.

    Args:
        found: (T,) bool, a face was detected in the frame.
        cuts: first frames of new shots (gaps are bridged within a shot only).
        fade: frames of the ramp; frame k of a face run (counted from the nearer faceless
            frame, 1-based) gets ``min(1, k / (fade + 1))``. Runs that start or end at the
            clip's ends do not fade there.
        bridge: faceless gaps up to this long between found frames of one shot count as found.

    Returns:
        (T,) float32.
    """
    usable = _bridge(np.asarray(found, bool), cuts, bridge)
    near = np.minimum(_since_faceless(usable), _since_faceless(usable[::-1])[::-1])
    weights = np.minimum(1.0, near / (fade + 1)) if fade > 0 else (near > 0).astype(float)
    return np.where(usable, weights, 0.0).astype(np.float32)


def _since_faceless(usable: np.ndarray) -> np.ndarray:
    """(T,) frames since the last faceless frame before or at each frame (inf: none yet)."""
    out = np.empty(len(usable))
    last = -np.inf
    for i, ok in enumerate(usable):
        if not ok:
            last = i
        out[i] = i - last
    return out


def _bridge(found: np.ndarray, cuts: np.ndarray | None, bridge: int) -> np.ndarray:
    """``found`` with short gaps between found frames of the same shot filled."""
    from lipforcing.media.shots import shot_ids

    out = found.copy()
    shots = shot_ids(np.zeros(0, int) if cuts is None else cuts, len(found))
    idx = np.flatnonzero(found)
    for a, b in zip(idx[:-1], idx[1:]):
        if 1 < b - a <= bridge + 1 and shots[a] == shots[b]:
            out[a:b] = True
    return out


def paste_back(
    frame: np.ndarray,
    crop: np.ndarray,
    transform: np.ndarray,
    cfg: MediaConfig,
    strength: float = 1.0,
) -> np.ndarray:
    """Blend ``crop`` into ``frame`` through the inverse of ``transform``.

    Args:
        frame: (H, W, 3) uint8 original frame.
        crop: (S, S, 3) uint8 generated aligned crop, S = ``cfg.crop_size``.
        transform: (2, 3) frame -> crop similarity of this frame.
        strength: scale of the blend mask in [0, 1] (:func:`paste_weights`); 0 returns a copy
            of ``frame``, bit for bit.

    Returns:
        (H, W, 3) uint8 frame, unchanged outside the warped mouth region (outside the warped
        crop for ``cfg.paste == "crop"``).
    """
    s = cfg.crop_size
    if crop.shape != (s, s, 3):
        raise UserError(f"paste_back: crop must be ({s}, {s}, 3), got {crop.shape}")
    if not 0.0 <= strength <= 1.0:
        raise UserError(f"paste_back: strength must be in [0, 1], got {strength}")
    if strength == 0.0:
        return frame.copy()
    transform = np.asarray(transform, np.float64)
    whole = cfg.paste == "crop"
    mask = np.ones((s, s), np.float32) if whole else blend_mask(cfg)
    alpha = mask * np.float32(strength)
    ys, xs = np.nonzero(alpha)
    if not len(ys):
        return frame.copy()
    x0, y0, x1, y1 = _region(
        (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), transform, frame.shape[:2]
    )
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out  # the mouth region lies outside the frame
    shifted = transform.copy()
    shifted[:, 2] += transform[:, :2] @ np.array([x0, y0], float)  # region -> crop
    size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    crop_f = crop.astype(np.float32)
    if cfg.color_match:
        region = frame[y0:y1, x0:x1]
        source = cv2.warpAffine(
            region.astype(np.float32),
            shifted,
            (s, s),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        ring = mask if whole else mask * (1.0 - mask) * 4.0  # peaks where the blend is half
        crop_f = color_match(crop_f, source, ring)
    warped = cv2.warpAffine(crop_f, shifted, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    if whole:
        footprint = cv2.warpAffine(mask, shifted, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)
        eroded, soft = align_restore_edge(footprint)
        warped = warped * eroded[..., None]
        a = soft * np.float32(strength)
    else:
        a = cv2.warpAffine(alpha, shifted, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)
    base = frame[y0:y1, x0:x1].astype(np.float32)
    blended = base + a[..., None] * (warped - base)
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


ALIGN_RESTORE_FIRST_EROSION = 2  # px, AlignRestore's first erosion (2 x its upscale factor 1)
ALIGN_RESTORE_EDGE_DIVISOR = 20  # AlignRestore: edge width w = sqrt(footprint area) // 20


def align_restore_edge(footprint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eroded footprint, soft blend weight) of a crop's warped footprint (H, W) float32 in
    frame pixels, as LatentSync's AlignRestore computes them (see the module docstring)."""
    first = np.ones((ALIGN_RESTORE_FIRST_EROSION,) * 2, np.uint8)
    eroded = cv2.erode(footprint, first)
    w = int(float(eroded.sum()) ** 0.5) // ALIGN_RESTORE_EDGE_DIVISOR
    if w == 0:
        return eroded, eroded.copy()
    centre = cv2.erode(eroded, np.ones((2 * w, 2 * w), np.uint8))
    taps = 2 * w + 1
    sigma = 0.3 * ((taps - 1) * 0.5 - 1) + 0.8  # OpenCV's formula for the size, given exactly
    return eroded, cv2.GaussianBlur(centre, (taps, taps), sigma)  # (sigma 0: rounded tables)


__all__ = [
    "ALIGN_RESTORE_EDGE_DIVISOR",
    "BRIDGE_FRAMES",
    "FADE_FRAMES",
    "align_restore_edge",
    "color_match",
    "paste_back",
    "paste_weights",
]
