"""Contact sheet of SynthTalk clips: frames over time with their landmarks, and a strip that
plots the mouth opening against the audio envelope (they rise and fall together)."""

from __future__ import annotations

import cv2
import numpy as np

from lipforcing.media.synthtalk.clip import render_clip


def _strip(opening: np.ndarray, envelope: np.ndarray, width: int, height: int) -> np.ndarray:
    img = np.full((height, width, 3), 255, np.uint8)
    for values, color in ((envelope, (60, 120, 220)), (opening, (220, 60, 60))):
        v = values / max(float(values.max()), 1e-6)
        x = np.linspace(0, width - 1, len(v))
        y = (height - 4) - v * (height - 8)
        pts = np.round(np.stack([x, y], 1) * 16).astype(np.int32)
        cv2.polylines(img, [pts], False, color, 2, cv2.LINE_AA, 4)
    cv2.putText(img, "mouth open", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (220, 60, 60), 1)
    cv2.putText(img, "audio RMS", (110, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 120, 220), 1)
    return img


def synthtalk_sheet(
    seeds: list[int], seconds: float, *, size: int = 256, fps: float = 25.0, columns: int = 6
) -> np.ndarray:
    """(H, W, 3) uint8 RGB: per seed, ``columns`` frames with landmarks and the sync strip."""
    tile = 160
    rows = []
    for seed in seeds:
        clip = render_clip(seed, seconds, size=size, fps=fps)
        picks = np.linspace(0, len(clip.frames) - 1, columns).round().astype(int)
        tiles = []
        for i in picks:
            frame = clip.frames[i].copy()
            for x, y in clip.landmarks5[i]:
                cv2.circle(frame, (int(round(x)), int(round(y))), 2, (0, 255, 0), -1)
            tiles.append(cv2.resize(frame, (tile, tile), interpolation=cv2.INTER_AREA))
        row = np.concatenate(tiles, 1)
        spf = clip.sample_rate / fps
        rms = np.array(
            [
                np.sqrt(np.mean(clip.audio[int(k * spf) : int((k + 1) * spf)] ** 2))
                for k in range(len(clip.frames))
            ]
        )
        rows += [row, _strip(clip.mouth[:, 0], rms, row.shape[1], 60)]
    return np.concatenate(rows, 0)


__all__ = ["synthtalk_sheet"]
