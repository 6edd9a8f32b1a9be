"""Who is in the footage: dlib identity embeddings of sampled frames, and how far apart they are.

Design choices:
- Every ``every`` seconds a frame with a usable tracked face is checked: the detector runs on
  the full frame (so a second face in view is counted), the detection holding the tracked
  face's nose tip is fitted with dlib's 68 points and cut into dlib's 150x150 identity chip,
  and the 128-d face-recognition descriptor is computed (about 30 ms per frame on a CPU).
- Two descriptors closer than 0.6 (Euclidean) are the same person, dlib's own threshold.
  A part of the footage is summarised by its medoid (the sample with the smallest summed
  distance to the others), which one outlying frame cannot move.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

EMBED_DIM = 128  # dlib's face descriptor


@dataclass
class IdentitySamples:
    """Identity descriptors of the checked frames of one video.

    Attributes:
        index: (N,) frame indices (at the media frame rate) that were checked.
        embedding: (N, 128) descriptors, NaN rows where the tracked face was not detected.
        faces: (N,) number of faces the detector saw in each checked frame.
    """

    index: np.ndarray
    embedding: np.ndarray
    faces: np.ndarray

    def valid(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """(M, 128) descriptors of the checked frames in [lo, hi) that have one."""
        hi = np.inf if hi is None else hi
        keep = (self.index >= lo) & (self.index < hi) & np.isfinite(self.embedding[:, 0])
        return self.embedding[keep]


def sample_frames(usable: np.ndarray, fps: float, every: float) -> np.ndarray:
    """One usable frame per ``every`` seconds (the first usable frame of each interval)."""
    step = max(1, int(round(every * fps)))
    out = []
    for start in range(0, len(usable), step):
        hits = np.flatnonzero(usable[start : start + step])
        if len(hits):
            out.append(start + hits[0])
    return np.asarray(out, int)


def identity_samples(
    path: Path, fps: float, landmarks5: np.ndarray, index: np.ndarray
) -> IdentitySamples:
    """Decode ``path`` at ``fps`` and describe the tracked face in frames ``index``."""
    from lipforcing.evaluation.csim import DlibFaceNet
    from lipforcing.evaluation.protocol import dlib_chip
    from lipforcing.media.faces import dense_landmarks, detect_boxes
    from lipforcing.media.io import iter_frames

    wanted = set(int(i) for i in index)
    emb = np.full((len(index), EMBED_DIM), np.nan)
    faces = np.zeros(len(index), int)
    row = {int(i): j for j, i in enumerate(index)}
    net = DlibFaceNet()
    last = max(wanted) if wanted else -1
    for k, (_, frame) in enumerate(iter_frames(path, fps, max_frames=None)):
        if k > last:
            break
        if k not in wanted:
            continue
        boxes = detect_boxes(frame)
        faces[row[k]] = len(boxes)
        box = _box_holding(boxes, landmarks5[k][2])
        if box is not None:
            chip = dlib_chip(frame, box, dense_landmarks(frame, box))
            emb[row[k]] = net.embed(chip[None])[0]
    return IdentitySamples(np.asarray(index, int), emb, faces)


def _box_holding(boxes: np.ndarray, point: np.ndarray) -> np.ndarray | None:
    """The smallest box containing ``point`` (x, y), or None."""
    inside = [
        b for b in boxes if b[0] <= point[0] <= b[2] and b[1] <= point[1] <= b[3]
    ]  # boxes come largest first
    return inside[-1] if inside else None


def medoid(embeddings: np.ndarray) -> np.ndarray:
    """The row with the smallest summed distance to the others, (D,)."""
    d = distances(embeddings, embeddings)
    return embeddings[int(np.argmin(d.sum(1)))]


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) Euclidean distances between the rows of ``a`` (N, D) and ``b`` (M, D)."""
    return np.linalg.norm(a[:, None] - b[None], axis=-1)


__all__ = ["IdentitySamples", "distances", "identity_samples", "medoid", "sample_frames"]
