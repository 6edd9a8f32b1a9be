"""Synthetic frames with several faces, shared by the face-choice tests."""

from __future__ import annotations

import numpy as np

from lipforcing.media.synthtalk.clip import render_clip


def three_faces(seconds: float) -> np.ndarray:
    """(T, 220, 560, 3) uint8: a large face on the left, two smaller ones in the middle and on
    the right (SynthTalk people 1, 2, 3)."""
    left = render_clip(1, seconds, size=200).frames
    middle = render_clip(2, seconds, size=160).frames
    right = render_clip(3, seconds, size=160).frames
    canvas = np.zeros((len(left), 220, 560, 3), np.uint8)
    canvas[:, 10:210, 0:200] = left
    canvas[:, 30:190, 200:360] = middle
    canvas[:, 30:190, 400:560] = right
    return canvas
