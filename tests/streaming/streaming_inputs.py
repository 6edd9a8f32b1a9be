"""Test inputs for the streaming tests: a drawn face with known landmarks, speech-like audio."""

from __future__ import annotations

import numpy as np


def face_frames(count: int = 20, size: int = 160, seed: int = 0):
    """(T, H, W, 3) uint8 frames of a drawn face and its (T, 5, 2) landmarks."""
    import cv2

    rng = np.random.default_rng(seed)
    base = np.array([[62, 70], [98, 70], [80, 92], [66, 114], [94, 114]], np.float64)
    frames, marks = [], []
    yy, xx = np.mgrid[0:size, 0:size]
    background = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    for t in range(count):
        shift = np.array([3 * np.sin(t / 4), 2 * np.cos(t / 5)])
        lm = base + shift
        img = background.copy()
        cx, cy = (lm[0] + lm[1]) / 2 + [0, 18]
        cv2.ellipse(img, (int(cx), int(cy)), (38, 50), 0, 0, 360, (225, 190, 160), -1)
        for x, y in lm[:2]:
            cv2.circle(img, (int(x), int(y)), 4, (40, 40, 40), -1)
        opening = 2 + int(6 * abs(np.sin(t / 2)))
        mouth_c = (int((lm[3, 0] + lm[4, 0]) / 2), int(lm[3, 1]))
        cv2.ellipse(img, mouth_c, (14, opening), 0, 0, 360, (120, 30, 40), -1)
        img = np.clip(img.astype(int) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
        frames.append(img)
        marks.append(lm)
    return np.stack(frames), np.stack(marks).astype(np.float32)


def speech_like(seconds: float, seed: int = 0, rate: int = 16_000) -> np.ndarray:
    """Syllable-rate modulated harmonics + noise, quantised to int16 steps (float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / rate) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None)
    x = 0.25 * envelope * voice + 0.01 * rng.standard_normal(len(t))
    return (np.round(np.clip(x, -1, 1) * 32767) / 32768).astype(np.float32)
