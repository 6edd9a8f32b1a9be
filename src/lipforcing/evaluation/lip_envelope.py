"""Lip-opening / speech-envelope correlation: a lip-sync measure that uses no trained network.

Per video frame, the inner-lip opening of the face (dlib's 68 landmarks) and the loudness of the
driving audio over that frame are correlated (Pearson) at the best lag within ``+-max_lag``
frames. Speech opens the mouth when it is loud, so real footage with its own audio correlates
clearly above zero, and the same footage with someone else's audio does not. The measure needs
only the landmark predictor, so it cannot share a trained network's blind spots (SyncNet scores
our own outputs with a network trained on the same kind of data).

Design choices:
- Opening: the mean of the three vertical inner-lip gaps of dlib's 68-point layout (points
  61-67, 62-66, 63-65; points 60-67 are the inner lip contour), divided by the inter-ocular
  distance (the distance between the eye centres, means of points 36-41 and 42-47), so it does
  not depend on the face size in pixels. NaN on frames without a face.
- Envelope: the audio is band-passed to ``SPEECH_BAND`` (300-3000 Hz, where the formants of
  vowels carry their energy; hum, rumble and hiss are left out) with a zero-phase Butterworth
  filter (no lag), then per video frame the RMS amplitude of the samples that play with it,
  frame ``i`` covering samples ``[i * sr / fps, (i + 1) * sr / fps)`` (the frame shows the
  middle of that interval, as SynthTalk renders it). Linear amplitude, not decibels: on the
  20 real clips of ``shared/data`` it separated own from shifted / other audio slightly better
  (mean r 0.23 vs 0.21 own; 0.05 / 0.10 for shifted / other audio either way).
- Lag ``k`` pairs ``opening[t]`` with ``envelope[t - k]``: a positive lag means the mouth
  follows the sound by ``k`` frames. The best lag is the one with the highest correlation
  (sync means positive correlation); each lag uses only the frames both series cover.
- A series without variance (a frozen mouth, constant audio) has no covariation to measure:
  its correlation is reported as 0.0, not NaN, so "the mouth ignores the audio" scores as it
  should. Fewer than ``MIN_FRAMES`` usable frames give NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lipforcing.errors import MediaError, UserError

MAX_LAG = 2  # frames searched on each side of lag 0
SPEECH_BAND = (300.0, 3000.0)  # Hz, band of the envelope
BAND_ORDER = 4  # Butterworth order of the band-pass (applied forward and backward)
MIN_FRAMES = 10  # fewer usable frames than this: the correlation is NaN
INNER_UPPER = (61, 62, 63)  # dlib 68-point inner upper lip, left to right
INNER_LOWER = (67, 66, 65)  # the inner lower lip points facing them
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)


@dataclass(frozen=True)
class LagCorrelation:
    """The best-lag Pearson correlation of two per-frame series.

    Attributes:
        correlation: Pearson r at ``lag`` (0.0 when a series has no variance, NaN when too few
            frames overlap).
        lag: frames the first series (the mouth) follows the second (the sound) by.
        by_lag: r at every lag searched, ``{lag: r}``.
        frames: frames used at the best lag.
    """

    correlation: float
    lag: int
    by_lag: dict[int, float] = field(default_factory=dict)
    frames: int = 0


@dataclass(frozen=True)
class LipEnvelopeResult:
    """The measure of one video: the correlation and the per-frame series behind it.

    Attributes:
        sync: best-lag correlation of ``opening`` with ``envelope``.
        opening: (T,) inner-lip opening / inter-ocular distance, NaN where no face.
        envelope: (T,) speech envelope (RMS amplitude of the speech band).
    """

    sync: LagCorrelation
    opening: np.ndarray
    envelope: np.ndarray

    @property
    def correlation(self) -> float:
        return self.sync.correlation

    @property
    def lag(self) -> int:
        return self.sync.lag

    @property
    def frames_with_face(self) -> int:
        return int(np.isfinite(self.opening).sum())

    def as_dict(self) -> dict:
        """JSON-ready summary (no per-frame series)."""
        return {
            "lip_envelope_r": round(float(self.correlation), 4),
            "lip_envelope_lag": self.lag,
            "lip_envelope_by_lag": {
                str(k): round(float(v), 4) for k, v in self.sync.by_lag.items()
            },
            "frames_with_face": self.frames_with_face,
            "frames": len(self.opening),
        }


def inner_lip_opening(points68: np.ndarray) -> np.ndarray:
    """Inner-lip opening over inter-ocular distance.

    Args:
        points68: (T, 68, 2) dlib landmarks in pixels (NaN rows where no face).

    Returns:
        (T,) float64, NaN where the landmarks are missing.
    """
    p = np.asarray(points68, np.float64)
    if p.ndim != 3 or p.shape[1:] != (68, 2):
        raise UserError(f"inner_lip_opening needs (T, 68, 2) landmarks, got {p.shape}")
    gaps = np.linalg.norm(p[:, list(INNER_UPPER)] - p[:, list(INNER_LOWER)], axis=-1)  # (T, 3)
    iod = np.linalg.norm(p[:, LEFT_EYE].mean(1) - p[:, RIGHT_EYE].mean(1), axis=-1)  # (T,)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = gaps.mean(-1) / iod
    return np.where(np.isfinite(out), out, np.nan)


def speech_envelope(audio: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """Per-video-frame RMS amplitude of ``audio`` in the speech band.

    Args:
        audio: (N,) mono samples in [-1, 1]; frames past its end read silence.
        sample_rate: Hz of ``audio``.
        fps: video frame rate.
        num_frames: T, the frames to cover.

    Returns:
        (T,) float64, >= 0.
    """
    if sample_rate <= 0 or fps <= 0 or num_frames < 0:
        raise UserError(f"speech_envelope: bad rates {sample_rate} Hz / {fps} fps")
    x = speech_band(np.asarray(audio, np.float64).reshape(-1), sample_rate)
    bounds = np.rint(np.arange(num_frames + 1) * sample_rate / fps).astype(int)
    x = np.concatenate([x, np.zeros(max(0, bounds[-1] - len(x)))])
    if not num_frames:
        return np.zeros(0)
    energy = np.add.reduceat(x[: bounds[-1]] ** 2, bounds[:-1])
    return np.sqrt(energy / np.maximum(np.diff(bounds), 1))


def speech_band(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Zero-phase band-pass of ``x`` to ``SPEECH_BAND`` (the top edge is kept below Nyquist)."""
    from scipy.signal import butter, sosfiltfilt

    low, high = SPEECH_BAND[0], min(SPEECH_BAND[1], 0.45 * sample_rate)
    sos = butter(BAND_ORDER, (low, high), "bandpass", fs=sample_rate, output="sos")
    pad = min(3 * (2 * len(sos) + 1), len(x) - 1)
    return sosfiltfilt(sos, x, padlen=max(pad, 0)) if len(x) > 1 else x


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two equal-length series over the entries finite in both (see module)."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < MIN_FRAMES:
        return float("nan")
    a, b = a[ok], b[ok]
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0  # no variance: nothing covaries
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def best_lag_correlation(
    mouth: np.ndarray, sound: np.ndarray, max_lag: int = MAX_LAG
) -> LagCorrelation:
    """Pearson r of ``mouth[t]`` with ``sound[t - lag]`` for every lag in ``[-max_lag, max_lag]``;
    the lag with the highest r wins (ties: the smallest |lag|)."""
    mouth, sound = np.asarray(mouth, np.float64), np.asarray(sound, np.float64)
    if mouth.shape != sound.shape or mouth.ndim != 1:
        raise UserError(f"series must be equal-length 1-D, got {mouth.shape} and {sound.shape}")
    if max_lag < 0:
        raise UserError(f"max_lag must be >= 0, got {max_lag}")
    n = len(mouth)
    by_lag = {}
    for lag in range(-max_lag, max_lag + 1):
        lo, hi = max(0, lag), min(n, n + lag)  # t with both t and t - lag in range
        by_lag[lag] = pearson(mouth[lo:hi], sound[lo - lag : hi - lag]) if hi > lo else np.nan
    ranked = sorted(by_lag, key=lambda k: (-_finite_or(by_lag[k], -np.inf), abs(k)))
    lag = ranked[0]
    lo, hi = max(0, lag), min(n, n + lag)
    used = int((np.isfinite(mouth[lo:hi]) & np.isfinite(sound[lo - lag : hi - lag])).sum())
    return LagCorrelation(float(by_lag[lag]), int(lag), by_lag, used)


def _finite_or(value: float, default: float) -> float:
    return value if np.isfinite(value) else default


def lip_landmarks(frames: np.ndarray, face=None, boxes: np.ndarray | None = None) -> np.ndarray:
    """dlib's 68 landmarks (T, 68, 2) of the followed face (NaN where none).

    ``boxes`` (T, 4): fit the landmarks inside these face boxes instead of detecting (e.g. the
    real footage's boxes for generated frames, so detector jitter does not enter); NaN rows are
    frames without a face. ``face`` chooses the face when detecting (see
    :func:`lipforcing.media.faces.track_faces`).
    """
    from lipforcing.media.faces import dense_landmarks, detect_landmarks

    frames = np.asarray(frames)
    if boxes is None:
        return detect_landmarks(frames, face)[0]
    boxes = np.asarray(boxes, np.float64)
    if boxes.shape != (len(frames), 4):
        raise UserError(f"boxes must be ({len(frames)}, 4), got {boxes.shape}")
    points = np.full((len(frames), 68, 2), np.nan)
    for i in np.flatnonzero(np.isfinite(boxes).all(1)):
        points[i] = dense_landmarks(frames[i], boxes[i])
    return points


def lip_envelope_sync(
    frames: np.ndarray,
    audio: np.ndarray,
    sample_rate: int,
    fps: float,
    *,
    max_lag: int = MAX_LAG,
    face=None,
    boxes: np.ndarray | None = None,
    points68: np.ndarray | None = None,
) -> LipEnvelopeResult:
    """The measure of a video: inner-lip opening vs the driving audio's envelope.

    Args:
        frames: (T, H, W, 3) uint8 RGB at ``fps`` (ignored when ``points68`` is given).
        audio: (N,) mono float audio that plays with the frames, sample 0 at frame 0.
        sample_rate: Hz of ``audio``.
        fps: frame rate of ``frames``.
        max_lag: lags searched, frames on each side.
        face: which face to follow when several are present (see ``track_faces``).
        boxes: (T, 4) face boxes to fit the landmarks in instead of detecting.
        points68: (T, 68, 2) landmarks already fitted (no detection at all).

    Raises:
        MediaError: no face in any frame.
    """
    points = points68 if points68 is not None else lip_landmarks(frames, face, boxes)
    opening = inner_lip_opening(points)
    if not np.isfinite(opening).any():
        raise MediaError("lip-envelope sync: no face found in any frame")
    envelope = speech_envelope(audio, sample_rate, fps, len(opening))
    return LipEnvelopeResult(best_lag_correlation(opening, envelope, max_lag), opening, envelope)


__all__ = [
    "MAX_LAG",
    "LagCorrelation",
    "LipEnvelopeResult",
    "best_lag_correlation",
    "inner_lip_opening",
    "lip_envelope_sync",
    "lip_landmarks",
    "pearson",
    "speech_envelope",
]
