"""The evaluation protocol: how a generated video is paired with its ground truth.

It avoids the known traps of lip-sync evaluation:
1. Same crops: faces are detected ONCE, on the ground truth (dlib HOG + 68 points, the media
   part's tracker); the resulting per-frame transforms, boxes and landmarks cut the crops of
   BOTH videos (aligned ``EVAL_CROP`` crops for SSIM/PSNR/LPIPS/FID/FVD/Sync, identity chips
   for CSIM, the predictor box for LMD). Independent detection on the prediction would add
   detector jitter to every metric and inflate FID/FVD.
2. Exact frame counts: both videos are read at the same rate and must have the same number of
   frames; a mismatch is an error unless ``trim`` (both cut to the shorter, and said so).
3. No fp16: every network runs in float32 (:func:`require_fp32`), features in float64.
Frames where the ground truth shows no face keep their interpolated crop for the image metrics
but are left out of CSIM and LMD.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from lipforcing.config import MediaConfig
from lipforcing.errors import MediaError, UserError
from lipforcing.evaluation.csim import ARCFACE_SIZE, DLIB_CHIP, DLIB_PADDING
from lipforcing.media.align import ARCFACE_112, fit_similarity, warp_to_crop
from lipforcing.media.faces import (
    dense_landmarks,
    five_from_68,
    follow_face,
    track_from_landmarks,
)

EVAL_CROP = 256  # px, side of the aligned face crop the image metrics see
EVAL_ALIGN = "arcface5"  # default placement of that crop (MediaConfig.align)


@dataclass
class GroundTruthFaces:
    """The face track of a ground-truth video, applied to both videos of a pair."""

    points: np.ndarray  # (T, 68, 2) dlib landmarks in frame pixels, NaN where not found
    boxes: np.ndarray  # (T, 4) detector boxes (x0, y0, x1, y1), NaN where not found
    found: np.ndarray  # (T,) bool
    transforms: np.ndarray  # (T, 2, 3) smoothed frame -> crop similarities
    crop_size: int

    @property
    def frames_with_face(self) -> np.ndarray:
        return np.flatnonzero(self.found)


def match_frames(pred: np.ndarray, gt: np.ndarray, name: str, trim: bool = False):
    """Check the frame counts; returns (pred, gt, note) where note says what was trimmed."""
    if len(pred) == len(gt):
        return pred, gt, None
    if not trim:
        raise UserError(f"{name}: {len(pred)} vs {len(gt)} frames (pass --trim to cut both)")
    n = min(len(pred), len(gt))
    return pred[:n], gt[:n], f"{name}: trimmed {len(pred)} / {len(gt)} -> {n} frames"


def track_ground_truth(
    frames: np.ndarray, crop_size: int = EVAL_CROP, face=None, align: str = EVAL_ALIGN
) -> GroundTruthFaces:
    """Detect and follow the face of the ground truth; MediaError when there is none.

    ``align``: how the crops are placed (a :class:`MediaConfig` ``align``); the tracker gets
    the 68 points and takes what that alignment fits from them, so the crops are the ones
    :func:`lipforcing.media.faces.track_faces` cuts for a preset with that alignment."""
    points, boxes, found, cuts = follow_face(frames, face)
    if not found.any():
        raise MediaError("ground truth: no face found in any frame (use --full-frame)")
    cfg = MediaConfig(crop_size=crop_size, align=align)
    track = track_from_landmarks(points, found, cfg, frames.shape[1:3], boxes, cuts)
    return GroundTruthFaces(points, boxes, found, track.transforms, crop_size)


def face_crops(frames: np.ndarray, faces: GroundTruthFaces) -> np.ndarray:
    """(T, H, W, 3) -> (T, S, S, 3) aligned crops cut with the ground truth's transforms."""
    return warp_to_crop(frames, faces.transforms, faces.crop_size)


def mouth_points(frames: np.ndarray, faces: GroundTruthFaces) -> np.ndarray:
    """(T, 20, 2) dlib mouth points 48-67 fitted inside the ground truth's boxes (NaN where the
    ground truth has no face)."""
    out = np.full((len(frames), 20, 2), np.nan)
    for i in faces.frames_with_face:
        out[i] = dense_landmarks(frames[i], faces.boxes[i])[48:68]
    return out


def dlib_chip(frame: np.ndarray, box, points68: np.ndarray) -> np.ndarray:
    """(150, 150, 3) dlib identity chip of one face, placed by its 68 landmarks
    (``dlib.get_face_chip_details``, padding 0.25)."""
    import dlib

    rect = dlib.rectangle(*(int(round(v)) for v in box))
    parts = [dlib.point(int(round(x)), int(round(y))) for x, y in points68]
    details = dlib.get_face_chip_details(
        dlib.full_object_detection(rect, parts), DLIB_CHIP, DLIB_PADDING
    )
    return dlib.extract_image_chip(np.ascontiguousarray(frame), details)


def dlib_chips(frames: np.ndarray, faces: GroundTruthFaces, index: np.ndarray) -> np.ndarray:
    """(N, 150, 150, 3) dlib identity chips of frames ``index``, placed by the ground truth's
    68 landmarks."""
    out = np.empty((len(index), DLIB_CHIP, DLIB_CHIP, 3), np.uint8)
    for j, i in enumerate(index):
        out[j] = dlib_chip(frames[i], faces.boxes[i], faces.points[i])
    return out


def arcface_chips(frames: np.ndarray, faces: GroundTruthFaces, index: np.ndarray) -> np.ndarray:
    """(N, 112, 112, 3) ArcFace crops of frames ``index``: the ground truth's 5 points fitted
    to InsightFace's template (per frame, unsmoothed, as InsightFace aligns)."""
    five = five_from_68(faces.points)
    out = np.empty((len(index), ARCFACE_SIZE, ARCFACE_SIZE, 3), np.uint8)
    for j, i in enumerate(index):
        m = fit_similarity(five[i], ARCFACE_112)
        out[j] = cv2.warpAffine(frames[i], m, (ARCFACE_SIZE, ARCFACE_SIZE), flags=cv2.INTER_LINEAR)
    return out


def identity_chips(frames: np.ndarray, faces: GroundTruthFaces, kind: str, step: int = 1):
    """Identity chips of every ``step``-th frame with a ground-truth face (``kind``: the
    network's ``chip``: "dlib" | "arcface")."""
    index = faces.frames_with_face[::step]
    cut = dlib_chips if kind == "dlib" else arcface_chips
    return cut(frames, faces, index)


def require_fp32(*models) -> None:
    """Refuse networks with non-float32 parameters (fp16 shifts FID/FVD and Sync scores)."""
    for m in models:
        for p in getattr(m, "parameters", lambda: [])():
            if p.dtype != torch.float32:
                raise UserError(
                    f"{type(m).__name__} has {p.dtype} weights; evaluation runs in fp32"
                )


__all__ = [
    "EVAL_ALIGN",
    "EVAL_CROP",
    "GroundTruthFaces",
    "arcface_chips",
    "dlib_chip",
    "dlib_chips",
    "face_crops",
    "identity_chips",
    "match_frames",
    "mouth_points",
    "require_fp32",
    "track_ground_truth",
]
