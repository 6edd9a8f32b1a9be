"""Shot-cut detection from the frames, so face tracks restart at cuts instead of smoothing across.

Design choices:
- Each frame is summarised by a signature (:func:`frame_signature`): a normalised HSV colour
  histogram (16 x 8 x 8 bins) and a 16 x 16 grey thumbnail, both from the frame shrunk to
  ``SIGNATURE_SIDE`` pixels. A transition ``i - 1 -> i`` has two distances: one minus the
  histogram intersection (colour content) and the mean absolute thumbnail difference over 255
  (layout).
- A cut is a spike, not a level: the transition is a cut when BOTH distances exceed
  ``CUT_RATIO`` times the local level: the larger of the medians of the ``NEIGHBOURS``
  transitions before it and after it (one shot may be busy, the other still), plus a small
  floor so a static video's sensor noise does not make ratios explode.
  Camera motion and speech raise the distances of many transitions together. A one-frame
  flash spikes two transitions, but the frames on either side of it match: so a cut also
  needs the frames one further apart across it (``j - 1 -> j + 1`` and ``j -> j + 2``) to
  differ by as much.
- Calibrated on the 20 real clips of ``shared/data`` (no cuts): the largest joint ratio inside
  a clip is 1.71; joining the end of any clip to the start of any other gives at least 2.65,
  also for the same speaker in the same studio (AOC, andrew_clip_1 -> _2). ``CUT_RATIO`` = 2.3
  sits between.
- One pass, one frame at a time (:class:`CutDetector`), holding only the previous signature
  and two distances per transition, so a decoder that never holds the whole clip can use it.
  A cut is confirmed only once ``NEIGHBOURS`` later frames are seen (:meth:`CutDetector.cuts`);
  :meth:`CutDetector.push` answers at once whether the transition into the frame is a possible
  cut judged from the frames before it (a face follower restarts there: a false alarm only
  makes it choose the face again by the same rule).
"""

from __future__ import annotations

import cv2
import numpy as np

SIGNATURE_SIDE = 128  # px, the frames are shrunk to this before summarising
HIST_BINS = (16, 8, 8)  # H, S, V bins of the colour histogram
THUMB_SIDE = 16  # px, side of the grey layout thumbnail
NEIGHBOURS = 12  # transitions on each side whose median is the local level
CUT_RATIO = 2.3  # a cut's distances exceed the local median by this factor (both)
HIST_FLOOR = 0.01  # added to the local median histogram distance
THUMB_FLOOR = 0.003  # added to the local median thumbnail distance


def frame_signature(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(histogram (16*8*8,) summing to 1, thumbnail (16, 16) float32) of an RGB uint8 frame."""
    h, w = frame.shape[:2]
    scale = SIGNATURE_SIDE / max(h, w)
    small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(HIST_BINS), [0, 180, 0, 256, 0, 256])
    hist = hist.ravel() / max(float(hist.sum()), 1.0)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    thumb = cv2.resize(grey, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA)
    return hist, thumb.astype(np.float32)


def transition_distances(signatures: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(T - 1, 2) distances (histogram, thumbnail) between consecutive signatures."""
    out = np.zeros((max(len(signatures) - 1, 0), 2))
    for i in range(1, len(signatures)):
        (h0, t0), (h1, t1) = signatures[i - 1], signatures[i]
        out[i - 1] = 1.0 - np.minimum(h0, h1).sum(), np.abs(t1 - t0).mean() / 255.0
    return out


def cuts_from_distances(distances: np.ndarray, skips: np.ndarray | None = None) -> np.ndarray:
    """Indices of the first frames of new shots.

    Args:
        distances: (T - 1, 2) distances of the transitions ``j -> j + 1``.
        skips: (T - 2, 2) distances ``j -> j + 2`` (frames one apart); None skips the flash test.
    """
    cuts = []
    for k in range(len(distances)):
        level = _local_level(distances, k)
        if level is None or not _above(distances[k], level):
            continue
        across = [] if skips is None else [skips[j] for j in (k - 1, k) if 0 <= j < len(skips)]
        if all(_above(d, level) for d in across):
            cuts.append(k + 1)  # transition k joins frames k and k + 1
    return np.asarray(cuts, int)


def _local_level(distances: np.ndarray, k: int) -> np.ndarray | None:
    """The busier side's median distance around transition ``k``, plus the floors."""
    left = distances[max(0, k - NEIGHBOURS) : k]
    right = distances[k + 1 : k + 1 + NEIGHBOURS]
    sides = [np.median(side, axis=0) for side in (left, right) if len(side)]
    if not sides:
        return None
    return np.max(sides, axis=0) + np.array([HIST_FLOOR, THUMB_FLOOR])


def _above(distance: np.ndarray, level: np.ndarray) -> bool:
    return bool(np.all(distance > CUT_RATIO * level))


class CutDetector:
    """Feed frames in order with :meth:`push`; read the confirmed cuts with :meth:`cuts`."""

    def __init__(self) -> None:
        self.recent: list[tuple[np.ndarray, np.ndarray]] = []  # the last two signatures
        self.distances: list[list[float]] = []  # transition j -> j + 1
        self.skips: list[list[float]] = []  # frames j -> j + 2

    def push(self, frame: np.ndarray) -> bool:
        """Add the next frame; True when it may start a new shot (judged from the past only)."""
        sig = frame_signature(frame)
        if self.recent:
            self.distances.extend(transition_distances([self.recent[-1], sig]).tolist())
        if len(self.recent) == 2:
            self.skips.extend(transition_distances([self.recent[0], sig]).tolist())
        self.recent = [*self.recent[-1:], sig]
        d = np.asarray(self.distances).reshape(-1, 2)
        left = d[max(0, len(d) - 1 - NEIGHBOURS) : len(d) - 1]
        if not len(left):
            return False
        level = np.median(left, axis=0) + np.array([HIST_FLOOR, THUMB_FLOOR])
        return _above(d[-1], level)

    def cuts(self) -> np.ndarray:
        """Sorted first frames of new shots among the frames pushed so far."""
        d = np.asarray(self.distances).reshape(-1, 2)
        return cuts_from_distances(d, np.asarray(self.skips).reshape(-1, 2))


def detect_cuts(frames: np.ndarray) -> np.ndarray:
    """Shot cuts of (T, H, W, 3) uint8 RGB frames: sorted indices i > 0 where a shot starts."""
    detector = CutDetector()
    for frame in frames:
        detector.push(frame)
    return detector.cuts()


def shot_ids(cuts: np.ndarray, length: int) -> np.ndarray:
    """(T,) int: the shot each frame belongs to (0 before the first cut)."""
    ids = np.zeros(length, int)
    for c in np.asarray(cuts, int):
        ids[c:] += 1
    return ids


def shot_slices(cuts: np.ndarray, length: int) -> list[slice]:
    """The frames of each shot as slices, in order."""
    bounds = [0, *(int(c) for c in cuts if 0 < c < length), length]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


__all__ = [
    "CUT_RATIO",
    "CutDetector",
    "cuts_from_distances",
    "detect_cuts",
    "frame_signature",
    "shot_ids",
    "shot_slices",
    "transition_distances",
]
