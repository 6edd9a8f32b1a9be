"""Silence gating: no mouthing while the speech is silent.

The tiny student, trained on SynthTalk speech whose pauses are a -50 dBFS white floor, keeps the
mouth closed on digital silence but mouths along with real background sound (room rumble,
distant talkers) in the pauses of real speech. The gate detects silent frames from the audio
and blends their audio features towards the features of digital silence, smoothly, so the
mouth closes in pauses and opens again ahead of the next word.

Design choices:
- Level: per video frame, the energy of that frame's own samples in the speech band
  (``band``, 300-3000 Hz) from a Hann-windowed FFT, in dBFS (a full-scale sine reads 0 dB in
  the band). Frame-local, so the level of a frame never depends on how audio was cut into
  chunks.
- Gate: 0 at or below ``low_db``, 1 at or above ``high_db``, linear between; then held open
  ``lead_frames`` before a voiced frame (the lips move ahead of the sound) and ``hang_frames``
  after it (word endings, short stops), then averaged over ``smooth_frames`` on each side so
  the blend ramps over a few frames instead of switching. A frame's gate reads the levels of
  ``reach`` frames on each side; the engine's audio margin covers them, so streaming and
  offline gates are identical.
- Blend: ``features + (1 - gate) * (silent - features)``, where ``silent`` are the features of
  digital silence: gate 1 keeps the features and gate 0 gives silence's, both bit for bit.
- Absolute thresholds (defaults -50 / -35 dBFS in band): SynthTalk's floor reads -55 dB and its
  open vowels -35 dB or more; the pauses of the real recordings in ``shared/data`` read -65 to
  -47 dB. Speech recorded far below full scale (peaks under -35 dBFS) would be gated too: turn
  the gate off or lower the thresholds for such input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipforcing.errors import UserError


@dataclass(frozen=True, kw_only=True)
class SilenceGateConfig:
    """Voice-activity gating of the audio features (inference only)."""

    enabled: bool = True  # False: features pass unchanged
    low_db: float = -50.0  # dBFS in band at or below which a frame is silent (gate 0)
    high_db: float = -35.0  # dBFS in band at or above which a frame is speech (gate 1)
    band: tuple[float, float] = (300.0, 3000.0)  # Hz, band whose energy is the level
    lead_frames: int = 2  # frames the gate opens before a voiced frame
    hang_frames: int = 2  # frames it stays open after one
    smooth_frames: int = 1  # moving-average half width of the blend ramp, frames

    def __post_init__(self) -> None:
        if not self.low_db < self.high_db:
            raise ValueError(f"silence gate: low_db must be below high_db, got {self}")
        if min(self.lead_frames, self.hang_frames, self.smooth_frames) < 0:
            raise ValueError(f"silence gate: frame counts must be >= 0, got {self}")

    @property
    def reach(self) -> int:
        """Frames on each side whose levels a frame's gate depends on."""
        return max(self.lead_frames, self.hang_frames) + self.smooth_frames


def frame_levels(audio: np.ndarray, samples_per_frame: int, sample_rate: int, band) -> np.ndarray:
    """(T,) speech-band level in dBFS of each whole frame of ``audio`` (T = len // spf)."""
    audio = np.asarray(audio, np.float64).reshape(-1)
    t = len(audio) // samples_per_frame
    if t == 0:
        return np.zeros(0)
    frames = audio[: t * samples_per_frame].reshape(t, samples_per_frame)
    window = np.hanning(samples_per_frame)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    freqs = np.fft.rfftfreq(samples_per_frame, 1.0 / sample_rate)
    inside = (freqs >= band[0]) & (freqs <= band[1])
    # Parseval with the window's energy: a sine of amplitude A in band reads A^2 / 2.
    mean_square = 2.0 * power[:, inside].sum(1) / (samples_per_frame * (window**2).sum())
    full_scale = 0.5  # mean square of a full-scale sine
    return 10.0 * np.log10(mean_square / full_scale + 1e-12)


def speech_gate(levels_db: np.ndarray, cfg: SilenceGateConfig) -> np.ndarray:
    """(T,) gate in [0, 1] from per-frame levels (frames near the ends see fewer neighbours)."""
    raw = np.clip((np.asarray(levels_db) - cfg.low_db) / (cfg.high_db - cfg.low_db), 0.0, 1.0)
    t = len(raw)
    held = np.array(
        [raw[max(0, i - cfg.hang_frames) : i + cfg.lead_frames + 1].max() for i in range(t)]
    )
    k = cfg.smooth_frames
    return np.array([held[max(0, i - k) : i + k + 1].mean() for i in range(t)])


def gate_features(features: np.ndarray, gate: np.ndarray, silent: np.ndarray) -> np.ndarray:
    """Blend (T, A) features towards ``silent`` ((A,), or (T, A) per frame) where ``gate`` (T,)
    is below 1."""
    features = np.asarray(features, np.float32)
    if gate.shape != (len(features),) or silent.shape not in (features.shape[1:], features.shape):
        raise UserError(f"gate_features: shapes {features.shape}, {gate.shape}, {silent.shape}")
    silent = np.broadcast_to(silent, features.shape)
    closed = (1.0 - gate.astype(np.float32))[:, None]
    blended = features + closed * (silent - features)  # gate 1: the features, bit for bit
    return np.where(closed == 1.0, silent, blended)  # gate 0: silence, bit for bit


__all__ = ["SilenceGateConfig", "frame_levels", "gate_features", "speech_gate"]
