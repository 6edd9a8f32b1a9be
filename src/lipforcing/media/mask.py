"""The mouth mask in canonical-crop coordinates, hard (for the model) and feathered (for blending).

Two geometries, chosen by the preset (``MediaConfig.mask_style``):

- ``"rectangle"`` (ours; the tiny preset was trained with it): rows from ``mouth_top * S`` to
  the bottom of the crop, columns inside ``mouth_side * S`` margins. With the template of
  :mod:`lipforcing.media.align` it starts just below the nose tip and covers mouth, chin and jaw
  line, so the generated mouth never has to match a hard edge on the lips.
- ``"latentsync"`` (the official release's, which uses LatentSync's ``mask.png`` with the 3-point
  alignment): a band across the face from 37% of the crop height with the nose kept (a notch
  over the middle 39% of the width down to 50%), closed below by a half ellipse that reaches
  94% of the height. The constants (:data:`LATENTSYNC`) were measured on LatentSync's 256 px
  mask (intersection over union 0.988 with it); ``MediaConfig.mask_image`` / ``--mask PATH``
  loads the image itself instead, as the release does: grey levels / 255, resized bilinearly to
  the crop, thresholded at 0.5, white = keep.

The blending mask is the hard mask eroded by the feather width and blurred with a Gaussian of
half that width, times the hard mask: 1 deep inside the region, 0 outside it, smooth between,
so pasting never touches pixels the model was told to keep (for the rectangle this is the
rectangle shrunk on every side, the crop's bottom border included).
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

from lipforcing.config import MediaConfig
from lipforcing.errors import MediaError

# LatentSync's mask.png geometry in units of the crop side (measured at 256 px, white = keep).
LATENTSYNC = {
    "top": 95 / 256,  # first masked row
    "band_bottom": 128 / 256,  # end of the straight band (and of the nose notch)
    "sides": (9 / 256, 247 / 256),  # band columns
    "notch": (78 / 256, 178 / 256),  # kept columns over the nose
    "centre_x": 128 / 256,  # ellipse centre and semi-axes below the band
    "centre_y": 138.2 / 256,
    "semi_x": 119.6 / 256,
    "semi_y": 104.8 / 256,
}


def mouth_box(cfg: MediaConfig) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) pixel bounds of the mouth region in the crop."""
    s = cfg.crop_size
    top = int(round(cfg.mouth_top * s))
    side = int(round(cfg.mouth_side * s))
    return top, s, side, s - side


def mouth_mask(cfg: MediaConfig) -> np.ndarray:
    """(S, S) float32 in {0, 1}; 1 = the region the model generates."""
    if cfg.mask_image is not None:
        return mask_from_image(cfg.mask_image, cfg.crop_size).copy()
    if cfg.mask_style == "latentsync":
        return latentsync_mask(cfg.crop_size)
    s = cfg.crop_size
    top, bottom, left, right = mouth_box(cfg)
    mask = np.zeros((s, s), np.float32)
    mask[top:bottom, left:right] = 1.0
    return mask


def latentsync_mask(size: int) -> np.ndarray:
    """The release's mask shape drawn at ``size`` px (1 = generate), see :data:`LATENTSYNC`."""
    g = LATENTSYNC
    c = (np.arange(size) + 0.5) / size  # pixel centres in crop units
    y, x = np.meshgrid(c, c, indexing="ij")
    band = (y >= g["top"]) & (y < g["band_bottom"]) & (x >= g["sides"][0]) & (x < g["sides"][1])
    band &= ~((x >= g["notch"][0]) & (x < g["notch"][1]))
    ellipse = ((x - g["centre_x"]) / g["semi_x"]) ** 2 + ((y - g["centre_y"]) / g["semi_y"]) ** 2
    lower = (y >= g["band_bottom"]) & (ellipse <= 1.0)
    return (band | lower).astype(np.float32)


@functools.lru_cache(maxsize=8)
def mask_from_image(path: str, size: int) -> np.ndarray:
    """A mask image (white = keep): grey / 255, bilinear to ``size``, > 0.5 kept; 1 = generate."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise MediaError(f"--mask {path}: not a readable image" if Path(path).exists() else
                         f"--mask {path}: no such file")  # fmt: skip
    keep = image.astype(np.float32) / 255.0
    if keep.shape != (size, size):
        keep = cv2.resize(keep, (size, size), interpolation=cv2.INTER_LINEAR)
    mask = (keep <= 0.5).astype(np.float32)
    if not mask.any() or mask.all():
        raise MediaError(f"--mask {path}: the image masks nothing or everything")
    mask.setflags(write=False)
    return mask


def blend_mask(cfg: MediaConfig) -> np.ndarray:
    """(S, S) float32 in [0, 1]: feathered inside the mouth region, 0 outside it."""
    s = cfg.crop_size
    width = max(1, int(round(cfg.feather * s)))  # feather width in pixels
    hard = mouth_mask(cfg)
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    inner = cv2.erode(hard, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    sigma = width / 2.0
    soft = cv2.GaussianBlur(inner, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_CONSTANT)
    return (soft * hard).astype(np.float32)


__all__ = [
    "LATENTSYNC",
    "blend_mask",
    "latentsync_mask",
    "mask_from_image",
    "mouth_box",
    "mouth_mask",
]
