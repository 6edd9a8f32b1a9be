"""The mouth mask in canonical-crop coordinates, hard (for the model) and feathered (for blending).

Design choices:
- The inpainting region is a rectangle over the lower face: rows from ``mouth_top * S`` to the
  bottom of the crop, columns inside ``mouth_side * S`` margins. With the template of
  :mod:`lipforcing.media.align` it starts just below the nose tip and covers mouth, chin and
  jaw line, so the generated mouth never has to match a hard edge on the lips.
- The blending mask is the hard mask shrunk by half the feather width and blurred with a
  Gaussian, so it is 1 deep inside the mouth region, 0 outside the hard mask, and smooth between:
  pasting never touches pixels the model was told to keep. Its bottom edge is feathered too
  (the crop's border is rarely the face's).
"""

from __future__ import annotations

import cv2
import numpy as np

from lipforcing.config import MediaConfig


def mouth_box(cfg: MediaConfig) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) pixel bounds of the mouth region in the crop."""
    s = cfg.crop_size
    top = int(round(cfg.mouth_top * s))
    side = int(round(cfg.mouth_side * s))
    return top, s, side, s - side


def mouth_mask(cfg: MediaConfig) -> np.ndarray:
    """(S, S) float32 in {0, 1}; 1 = the region the model generates."""
    s = cfg.crop_size
    top, bottom, left, right = mouth_box(cfg)
    mask = np.zeros((s, s), np.float32)
    mask[top:bottom, left:right] = 1.0
    return mask


def blend_mask(cfg: MediaConfig) -> np.ndarray:
    """(S, S) float32 in [0, 1]: feathered inside the mouth region, 0 outside it."""
    s = cfg.crop_size
    width = max(1, int(round(cfg.feather * s)))  # feather width in pixels
    top, bottom, left, right = mouth_box(cfg)
    inner = np.zeros((s, s), np.float32)
    inner[top + width : bottom - width, left + width : right - width] = 1.0
    sigma = width / 2.0
    soft = cv2.GaussianBlur(inner, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_CONSTANT)
    return (soft * mouth_mask(cfg)).astype(np.float32)


__all__ = ["blend_mask", "mouth_box", "mouth_mask"]
