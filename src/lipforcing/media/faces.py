"""Face detection, landmarks and the per-frame face track.

Design choices:
- Detector: dlib's HOG frontal-face detector (ships inside the dlib wheel) run on EVERY frame,
  downscaled so its longer side is ``DETECT_SIDE`` pixels (about 70 frames/s on one core for
  512 px frames). HOG finds faces of 80 px and up, so a frame without a face at that size is
  searched again at twice the size, up to ``MAX_DETECT_SIDE`` or twice the frame (small faces
  in 4K frames, faces under 80 px in small frames).
  MTCNN from facenet-pytorch was the first choice, but its package imports
  torchvision, which does not work here.
- Landmarks: dlib's 68-point shape predictor (face-recognition-models) on the full-resolution
  frame inside the detected box. The 5 alignment points are derived from it: eye centres (mean
  of points 36-41 and 42-47), nose tip (30), mouth corners (48, 54), image-left first, the
  order of the InsightFace template.
- Several faces: the choice (``face``) is made in the first frame where any face is found:
  the largest (default), the one nearest the frame centre, the one given by index (left to
  right), or the one overlapping a given box most; later frames keep the detection that
  overlaps the previous choice most, so the track stays on one person.
- Shot cuts (:mod:`lipforcing.media.shots`, detected from the frames) restart the track: the
  face is chosen afresh by the same rule in the new shot, and the crop transforms are gap-filled
  and smoothed within each shot only, never across a cut.
- Frames with no face keep ``found = False``; their transforms are interpolated from the
  neighbours in the same shot (see :mod:`lipforcing.media.align`) so crops exist for every
  frame, and consumers leave not-found frames untouched.
"""

from __future__ import annotations

import functools
import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from lipforcing.config import MediaConfig
from lipforcing.errors import MediaError, UserError
from lipforcing.media.align import alignment_points, transforms_from_landmarks
from lipforcing.media.shots import CutDetector, detect_cuts, shot_slices

DETECT_SIDE = 400  # px, longer side of the image the detector sees first
MAX_DETECT_SIDE = 1600  # px, the largest size tried when no face is found (4K: faces > 100 px)
REACQUIRE_FRAMES = 25  # frames without the tracked face after which a new face may be chosen
Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) pixels
FaceChoice = int | Box | Literal["largest", "center"] | None  # None = "largest"


@dataclass
class FaceTrack:
    """One tracked face over a clip."""

    transforms: np.ndarray  # (T, 2, 3) smoothed frame -> crop similarity
    found: np.ndarray  # (T,) bool, a face was detected in the frame
    landmarks: np.ndarray  # (T, 5, 2) pixel 5-point landmarks, NaN where not found
    raw_transforms: np.ndarray  # (T, 2, 3) before temporal smoothing
    boxes: np.ndarray  # (T, 4) face boxes (x0, y0, x1, y1), NaN where not found or unknown
    detect_seconds: float = 0.0  # wall time spent detecting and fitting landmarks
    cuts: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # first frames of shots

    @property
    def found_ratio(self) -> float:
        return float(np.mean(self.found)) if len(self.found) else 0.0


def _model_path(name: str) -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("face detection needs the face-recognition-models package (pip install)")
    path = Path(spec.submodule_search_locations[0]) / "models" / name
    if not path.is_file():
        raise UserError(f"face-recognition-models is missing {name}")
    return str(path)


@functools.cache
def _dlib():
    try:
        import dlib
    except ImportError:
        raise UserError("face detection needs dlib (pip install dlib-bin)") from None

    predictor = dlib.shape_predictor(_model_path("shape_predictor_68_face_landmarks.dat"))
    return dlib, dlib.get_frontal_face_detector(), predictor


def detect_boxes(frame: np.ndarray, detect_side: int = DETECT_SIDE) -> np.ndarray:
    """Face boxes (N, 4) as (x0, y0, x1, y1) in frame pixels, largest first."""
    _, detector, _ = _dlib()
    scale = detect_side / max(frame.shape[:2])
    if scale == 1.0:
        small = frame
    else:
        inter = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=inter)
    rects = detector(np.ascontiguousarray(small), 0)
    boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], float)
    boxes = boxes.reshape(-1, 4) / scale
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[np.argsort(-area)]


def dense_landmarks(frame: np.ndarray, box: Box) -> np.ndarray:
    """dlib's 68 landmarks (68, 2) of the face in ``box``."""
    dlib, _, predictor = _dlib()
    rect = dlib.rectangle(*(int(round(v)) for v in box))
    shape = predictor(np.ascontiguousarray(frame), rect)
    return np.array([[p.x, p.y] for p in shape.parts()], float)


def five_from_68(points: np.ndarray) -> np.ndarray:
    """(..., 68, 2) -> (..., 5, 2): eye centres, nose tip, mouth corners."""
    return np.stack(
        [
            points[..., 36:42, :].mean(-2),
            points[..., 42:48, :].mean(-2),
            points[..., 30, :],
            points[..., 48, :],
            points[..., 54, :],
        ],
        -2,
    )


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (N, 4) with one box b (4,)."""
    x0, y0 = np.maximum(a[:, 0], b[0]), np.maximum(a[:, 1], b[1])
    x1, y1 = np.minimum(a[:, 2], b[2]), np.minimum(a[:, 3], b[3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter + 1e-9)


def _choose(
    boxes: np.ndarray, previous: np.ndarray | None, face: FaceChoice, frame_hw: tuple[int, int]
) -> int | None:
    if not len(boxes):
        return None
    if previous is not None:
        return int(np.argmax(_iou(boxes, previous)))
    if face is None or face == "largest":
        return 0  # boxes come largest first
    if face == "center":
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        middle = np.array(frame_hw[::-1], float) / 2  # (x, y)
        return int(np.argmin(np.linalg.norm(centres - middle, axis=1)))
    if isinstance(face, int):
        order = np.argsort(boxes[:, 0])  # left to right
        return int(order[face]) if face < len(boxes) else None
    overlap = _iou(boxes, np.asarray(face, float))
    return int(np.argmax(overlap)) if overlap.max() > 0 else None


def _sides(frame_side: int, start: int) -> list[int]:
    """Detection sizes to try: ``start``, then doubling, up to twice the frame (small faces)."""
    limit = min(2 * frame_side, MAX_DETECT_SIDE)
    sides = [min(start, limit)]
    while sides[-1] < limit:
        sides.append(min(2 * sides[-1], limit))
    return sides


class FaceFollower:
    """Per-frame detection that stays on one face: ``follower(frame) -> (points68, box)``.

    Each frame is searched at ``detect_side`` first; on a miss at twice that, and so on up to
    full resolution (small faces), and the size that worked is kept for the next frames.
    Returns (None, None) when the followed face is not in the frame. With ``shots`` (default)
    every frame also feeds a :class:`~lipforcing.media.shots.CutDetector`: the face is chosen
    afresh where a new shot may start, and :meth:`cuts` gives the confirmed cuts (indices of
    the frames passed in) for :func:`track_from_landmarks`.
    """

    def __init__(
        self, face: FaceChoice = None, detect_side: int = DETECT_SIDE, *, shots: bool = True
    ) -> None:
        self.face, self.side = face, detect_side
        self.previous: np.ndarray | None = None  # box of the followed face
        self.index, self.last = -1, -1  # current frame, last frame the face was seen
        self.shots = CutDetector() if shots else None

    def cuts(self) -> np.ndarray:
        """Confirmed shot cuts among the frames seen so far (first frames of new shots)."""
        return self.shots.cuts() if self.shots is not None else np.zeros(0, int)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        self.index += 1
        if self.index - self.last > REACQUIRE_FRAMES:
            self.previous = None  # lost for long: pick a face afresh
        if self.shots is not None and self.shots.push(frame):
            self.previous = None  # a new shot may start here: choose by the rule again
        for trial in _sides(max(frame.shape[:2]), self.side):
            candidates = detect_boxes(frame, trial)
            k = _choose(candidates, self.previous, self.face, frame.shape[:2])
            prev = self.previous
            if k is not None and (prev is None or _iou(candidates[k : k + 1], prev)[0]):
                break  # our face (a detection overlapping the last one, or a first choice)
        else:
            return None, None  # no face, or only other people's faces
        self.previous, self.last, self.side = candidates[k], self.index, trial
        return dense_landmarks(frame, candidates[k]), candidates[k]


def follow_face(
    frames: np.ndarray, face: FaceChoice = None, detect_side: int = DETECT_SIDE
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Detect and follow one face through shots: (landmarks68 (T, 68, 2), boxes (T, 4),
    found (T,), cuts (first frames of new shots))."""
    t = len(frames)
    points = np.full((t, 68, 2), np.nan)
    boxes = np.full((t, 4), np.nan)
    follow = FaceFollower(face, detect_side)
    for i, frame in enumerate(frames):
        p, box = follow(frame)
        if box is not None:
            points[i], boxes[i] = p, box
    return points, boxes, np.isfinite(boxes[:, 0]), follow.cuts()


def detect_landmarks(
    frames: np.ndarray, face: FaceChoice = None, detect_side: int = DETECT_SIDE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detect and follow one face: returns (landmarks68 (T, 68, 2), boxes (T, 4), found (T,))."""
    return follow_face(frames, face, detect_side)[:3]


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise UserError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    return frames


def track_faces(
    frames: np.ndarray,
    cfg: MediaConfig,
    landmarks: np.ndarray | None = None,
    *,
    face: FaceChoice = None,
) -> FaceTrack:
    """Track one face and compute the smoothed frame -> crop transforms.

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        cfg: crop size and smoothing strength.
        landmarks: known (T, 5, 2) points (SynthTalk ``landmarks5``); no detector runs and
            frames with non-finite points count as not found.
        face: which face when several are present: None or "largest", "center" (nearest the
            frame centre), an int = index left to right, or an (x0, y0, x1, y1) box = the
            detection overlapping it most. Chosen again at each shot cut (detected from the
            frames, also when ``landmarks`` are given).

    Returns:
        :class:`FaceTrack`; ``found`` is all False when no face is seen (no error here).
    """
    frames = _check_frames(frames)
    start = time.perf_counter()
    boxes = None
    if landmarks is None and cfg.detector == "synthtalk":
        raise UserError("detector 'synthtalk' needs the clip's landmarks5 (its .npz)")
    if landmarks is not None:
        landmarks = np.asarray(landmarks, np.float64)
        if landmarks.shape != (len(frames), 5, 2):
            raise UserError(f"landmarks must be ({len(frames)}, 5, 2), got {landmarks.shape}")
        found = np.isfinite(landmarks).all(axis=(1, 2))
        cuts = detect_cuts(frames)
    else:
        points, boxes, found, cuts = follow_face(frames, face)
        landmarks = alignment_points(points, cfg.align)
    track = track_from_landmarks(landmarks, found, cfg, frames.shape[1:3], boxes, cuts)
    track.detect_seconds = time.perf_counter() - start
    return track


def track_from_landmarks(
    landmarks: np.ndarray,
    found: np.ndarray,
    cfg: MediaConfig,
    frame_hw: tuple[int, int],
    boxes: np.ndarray | None = None,
    cuts: np.ndarray | None = None,
) -> FaceTrack:
    """A :class:`FaceTrack` from per-frame landmarks and ``found`` (T,): (T, 68, 2) dlib points,
    or the alignment's own points ((T, 5, 2) for arcface5, (T, 3, 2) for latentsync3).

    Transforms are gap-filled and smoothed within each shot (``cuts``: first frames of new
    shots); a shot without any face gets the centred crop.
    """
    if landmarks.shape[1] == 68:
        landmarks = alignment_points(landmarks, cfg.align)
    t = len(found)
    cuts = np.zeros(0, int) if cuts is None else np.asarray(cuts, int)
    raw, smooth = np.empty((t, 2, 3)), np.empty((t, 2, 3))
    for shot in shot_slices(cuts, t):
        if found[shot].any():
            try:
                raw[shot], smooth[shot] = transforms_from_landmarks(
                    landmarks[shot], found[shot], cfg.crop_size, cfg.smoothing, cfg.align
                )
            except ValueError as e:
                raise UserError(f"{e} (SynthTalk clips carry 5 points: use arcface5)") from None
        else:
            raw[shot] = smooth[shot] = _centre_crop(frame_hw, cfg.crop_size, shot.stop - shot.start)
    return FaceTrack(
        transforms=smooth,
        found=found,
        landmarks=np.where(found[:, None, None], landmarks, np.nan),
        raw_transforms=raw,
        boxes=boxes if boxes is not None else np.full((t, 4), np.nan),
        cuts=cuts,
    )


def _centre_crop(hw: tuple[int, int], crop_size: int, t: int) -> np.ndarray:
    """The centred square crop: the fallback transform when there is no face at all."""
    h, w = hw
    s = crop_size / min(h, w)
    m = np.array([[s, 0, crop_size / 2 - s * w / 2], [0, s, crop_size / 2 - s * h / 2]])
    return np.repeat(m[None], t, 0)


def mouth_landmarks(frames: np.ndarray, face: FaceChoice = None) -> np.ndarray:
    """The 20 mouth points of dlib's 68 (indices 48-67) per frame: (T, 20, 2), NaN if no face.

    Used by the evaluation's landmark distance (LMD).
    """
    points, _, _ = detect_landmarks(_check_frames(frames), face)
    return points[:, 48:68]


def parse_face(text: str | None, option: str = "--face") -> FaceChoice:
    """Spelling of the face choice: "" / None / "largest", "center" (or "centre"), "1" = index
    left to right, "x0,y0,x1,y1" = box; ``option`` names it in the error."""
    if not text or text.strip().lower() == "largest":
        return None
    if text.strip().lower() in {"center", "centre"}:
        return "center"
    parts = text.split(",")
    try:
        if len(parts) == 1 and int(parts[0]) >= 0:
            return int(parts[0])
        if len(parts) == 4:
            x0, y0, x1, y1 = map(float, parts)
            if x1 > x0 and y1 > y0:
                return (x0, y0, x1, y1)
    except ValueError:
        pass
    raise UserError(
        f"{option} must be largest, center, an index (0 = leftmost) or a box x0,y0,x1,y1, "
        f"got {text!r}"
    )


def describe_face(face: FaceChoice) -> str:
    """How a face choice reads in a report."""
    if face is None or face == "largest":
        return "largest"
    if face == "center":
        return "center"
    if isinstance(face, int):
        return f"index {face} from the left"
    return "box " + ",".join(f"{v:g}" for v in face)


def require_face(track: FaceTrack, name: str) -> None:
    """Raise a one-line MediaError when the track never saw a face."""
    if not track.found.any():
        raise MediaError(f"{name}: no face found in any frame")


__all__ = [
    "FaceChoice",
    "FaceFollower",
    "FaceTrack",
    "describe_face",
    "dense_landmarks",
    "detect_boxes",
    "detect_landmarks",
    "five_from_68",
    "follow_face",
    "mouth_landmarks",
    "parse_face",
    "require_face",
    "track_faces",
    "track_from_landmarks",
]
