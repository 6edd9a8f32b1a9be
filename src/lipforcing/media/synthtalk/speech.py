"""SynthTalk speech: a random phoneme script, its formant-synthesised audio and mouth tracks.

Every phoneme has an acoustic recipe (voicing, formants F1-F3, frication noise band, burst) and
a viseme (mouth opening, lip spread, lip rounding). Both the audio and the mouth parameters are
rendered from the same script on the same clock, so the mouth is exactly in sync with the
sound (offset 0): open vowels have a high F1 and an open mouth, spread vowels a high F2 and
wide lips, rounded vowels a low F2 and rounded lips, bilabials close the lips, silence keeps
the mouth closed. That is the audio-visual relation the tiny models have to learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

SAMPLE_RATE = 16_000
HOP = 80  # 5 ms synthesis blocks: formants, pitch and amplitudes are constant within one
MOUTH_PARAMS = ("open", "spread", "round")


@dataclass(frozen=True)
class Phone:
    """Acoustic recipe and viseme of one phoneme."""

    voiced: float  # amplitude of the glottal source (0 = voiceless)
    formants: tuple[float, float, float]  # F1, F2, F3 in Hz (adult male tract; scaled/speaker)
    noise: float  # amplitude of frication noise
    noise_band: tuple[float, float]  # its band in Hz
    burst: bool  # a release burst at the end of a closure (plosives)
    viseme: tuple[float, float, float]  # (open, spread, round) targets in [0, 1]
    duration: tuple[float, float]  # range of durations in s


PHONES: dict[str, Phone] = {
    # vowels
    "a": Phone(1.0, (750, 1250, 2600), 0.0, (0, 0), False, (1.00, 0.55, 0.0), (0.10, 0.22)),
    "e": Phone(1.0, (500, 1850, 2600), 0.0, (0, 0), False, (0.50, 0.80, 0.0), (0.09, 0.18)),
    "i": Phone(0.9, (290, 2300, 3000), 0.0, (0, 0), False, (0.18, 1.00, 0.0), (0.08, 0.16)),
    "o": Phone(1.0, (500, 880, 2500), 0.0, (0, 0), False, (0.62, 0.25, 0.75), (0.10, 0.20)),
    "u": Phone(0.9, (320, 800, 2300), 0.0, (0, 0), False, (0.20, 0.10, 1.00), (0.08, 0.16)),
    # consonants
    "m": Phone(0.35, (250, 1000, 2300), 0.0, (0, 0), False, (0.00, 0.50, 0.1), (0.06, 0.11)),
    "b": Phone(0.12, (250, 900, 2300), 0.0, (0, 0), True, (0.00, 0.50, 0.1), (0.05, 0.09)),
    "p": Phone(0.0, (250, 900, 2300), 0.0, (0, 0), True, (0.00, 0.50, 0.1), (0.06, 0.10)),
    "f": Phone(0.0, (400, 1400, 2500), 0.25, (1200, 7000), False, (0.10, 0.55, 0.0), (0.07, 0.12)),
    "s": Phone(0.0, (400, 1700, 2600), 0.35, (4000, 7500), False, (0.12, 0.85, 0.0), (0.07, 0.13)),
    "t": Phone(0.0, (400, 1700, 2600), 0.0, (0, 0), True, (0.28, 0.60, 0.0), (0.05, 0.09)),
    "n": Phone(0.35, (300, 1500, 2500), 0.0, (0, 0), False, (0.28, 0.60, 0.0), (0.05, 0.10)),
    "l": Phone(0.7, (380, 1200, 2600), 0.0, (0, 0), False, (0.35, 0.55, 0.0), (0.05, 0.10)),
    # silence: closed, relaxed mouth
    "_": Phone(0.0, (500, 1500, 2500), 0.0, (0, 0), False, (0.00, 0.50, 0.0), (0.15, 0.60)),
}
VOWELS = "aeiou"
CONSONANTS = "mbpfstnl"
REST = np.array(PHONES["_"].viseme, np.float32)


@dataclass(frozen=True)
class Voice:
    """A speaker: pitch, vocal-tract scaling, breathiness, speaking rate, loudness."""

    f0: float  # mean pitch, Hz
    tract: float  # formant scale (shorter tract -> higher formants)
    breath: float  # aspiration noise mixed into voicing
    rate: float  # duration scale (< 1: faster)
    gain: float  # output peak

    @staticmethod
    def random(rng: np.random.Generator) -> Voice:
        female = rng.random() < 0.5
        return Voice(
            f0=float(rng.uniform(170, 240) if female else rng.uniform(90, 140)),
            tract=float(rng.uniform(1.08, 1.2) if female else rng.uniform(0.92, 1.04)),
            breath=float(rng.uniform(0.02, 0.12)),
            rate=float(rng.uniform(0.85, 1.2)),
            gain=float(rng.uniform(0.35, 0.6)),
        )


def random_script(
    rng: np.random.Generator, seconds: float, voice: Voice
) -> list[tuple[str, float, float]]:
    """Phonemes ``(label, start, end)`` covering ``[0, seconds)``: words of 1-3 CV(C) syllables
    separated by pauses of 0.15-0.6 s (now and then a long one). Starts and ends in silence."""
    script: list[tuple[str, float, float]] = []
    t = float(rng.uniform(0.1, 0.4))
    script.append(("_", 0.0, t))

    def add(label: str, scale: float = 1.0) -> None:
        nonlocal t
        lo, hi = PHONES[label].duration
        d = float(rng.uniform(lo, hi)) * voice.rate * scale
        script.append((label, t, t + d))
        t += d

    while t < seconds - 0.3:
        for _ in range(int(rng.integers(1, 4))):  # syllables of a word
            if rng.random() < 0.8:
                add(str(rng.choice(list(CONSONANTS))))
            add(str(rng.choice(list(VOWELS))))
            if rng.random() < 0.25:
                add(str(rng.choice(list(CONSONANTS))))
        add("_", scale=float(rng.uniform(2.0, 3.0)) if rng.random() < 0.1 else 1.0)
    if script[-1][0] == "_":
        label, start, _ = script.pop()
        script.append((label, start, seconds))
    else:
        script.append(("_", t, max(seconds, t)))
    return [(lab, s, min(e, seconds)) for lab, s, e in script if s < seconds]


def _targets(script, times: np.ndarray, key) -> np.ndarray:
    """Piecewise-constant per-phoneme values sampled at ``times`` (N,) -> (N, D)."""
    starts = np.array([s for _, s, _ in script])
    index = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(script) - 1)
    table = np.array([key(PHONES[lab]) for lab, _, _ in script], np.float64)
    return table[index]


def _smooth(x: np.ndarray, rate: float, tau: float) -> np.ndarray:
    """Forward-backward one-pole smoothing (zero phase) with time constant ``tau`` seconds."""
    a = float(np.exp(-1.0 / (tau * rate)))
    y = lfilter([1 - a], [1, -a], x, axis=0)
    return lfilter([1 - a], [1, -a], y[::-1], axis=0)[::-1]


def mouth_tracks(script, times: np.ndarray) -> np.ndarray:
    """(N, 3) mouth parameters (open, spread, round) at ``times``: viseme targets smoothed
    with a 25 ms zero-phase filter (coarticulation), so the mouth moves with the sound."""
    dt = 0.005
    grid = np.arange(0.0, times.max() + 0.1, dt)
    raw = _targets(script, grid, lambda p: p.viseme)
    smooth = _smooth(raw, 1 / dt, 0.025)
    out = np.stack([np.interp(times, grid, smooth[:, k]) for k in range(3)], 1)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _resonator(f: float, bw: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-pole resonator with unit gain at DC (Klatt)."""
    r = np.exp(-np.pi * bw / rate)
    c = -(r**2)
    b = 2 * r * np.cos(2 * np.pi * f / rate)
    return np.array([1 - b - c]), np.array([1.0, -b, -c])


def synthesize(
    script, voice: Voice, seconds: float, rng: np.random.Generator, rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Formant synthesis of ``script``: glottal pulses + aspiration and frication noise through
    three time-varying resonators (5 ms blocks, filter state carried), float32 mono."""
    n = int(round(seconds * rate))
    blocks = -(-n // HOP)
    centres = (np.arange(blocks) + 0.5) * HOP / rate
    dt = HOP / rate
    voiced = _smooth(_targets(script, centres, lambda p: [p.voiced])[:, 0], 1 / dt, 0.012)
    noise_amp = _smooth(_targets(script, centres, lambda p: [p.noise])[:, 0], 1 / dt, 0.008)
    formants = _smooth(_targets(script, centres, lambda p: p.formants), 1 / dt, 0.02) * voice.tract

    # Glottal source: pulse train at a wandering pitch with a declining intonation per word,
    # low-passed for the glottal spectral tilt.
    t = np.arange(blocks * HOP) / rate
    drift = np.interp(t, np.linspace(0, seconds + dt, 8), rng.uniform(-0.12, 0.12, 8))
    f0 = voice.f0 * (1 + drift + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    phase = np.cumsum(f0 / rate)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    glottal = lfilter([1.0], [1.0, -0.97], pulses)
    glottal = sosfilt(butter(2, 60, btype="high", fs=rate, output="sos"), glottal)
    white = rng.standard_normal(blocks * HOP)
    source = np.repeat(voiced, HOP) * (glottal + voice.breath * white)

    out = np.zeros(blocks * HOP)
    gains = (1.0, 0.5, 0.25)
    for k in range(3):
        zi = np.zeros(2)
        bw = (80.0, 100.0, 150.0)[k]
        for i in range(blocks):
            seg = slice(i * HOP, (i + 1) * HOP)
            b, a = _resonator(float(formants[i, k]), bw, rate)
            y, zi = lfilter(b, a, source[seg], zi=zi)
            out[seg] += gains[k] * y

    # Frication: band-passed noise per phoneme band, and release bursts after closures.
    for label in {lab for lab, _, _ in script if PHONES[lab].noise > 0}:
        lo, hi = PHONES[label].noise_band
        sos = butter(4, [lo, min(hi, 0.45 * rate)], btype="band", fs=rate, output="sos")
        band = sosfilt(sos, rng.standard_normal(blocks * HOP))
        gate = np.zeros(blocks * HOP)
        for lab, s, e in script:
            if lab == label:
                gate[int(s * rate) : int(e * rate)] = 1.0
        gate = _smooth(gate, rate, 0.008)
        out += 3.0 * np.repeat(noise_amp, HOP) * gate * band
    burst_sos = butter(2, [500, 6000], btype="band", fs=rate, output="sos")
    for lab, _s, e in script:
        if PHONES[lab].burst:
            i0 = int(e * rate)
            length = int(0.015 * rate)
            env = np.exp(-np.arange(length) / (0.004 * rate))
            burst = sosfilt(burst_sos, rng.standard_normal(length)) * env * 1.5
            out[i0 : i0 + length] += burst[: max(0, len(out) - i0)]

    out = out[:n]
    peak = np.abs(out).max()
    if peak > 0:
        out *= voice.gain / peak
    out += 10 ** (-50 / 20) * rng.standard_normal(n)  # room noise floor
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def phoneme_arrays(script) -> tuple[np.ndarray, np.ndarray]:
    """Script as arrays for an npz: labels (N,) str and times (N, 2) float."""
    labels = np.array([lab for lab, _, _ in script])
    times = np.array([[s, e] for _, s, e in script], np.float64)
    return labels, times


__all__ = [
    "MOUTH_PARAMS",
    "PHONES",
    "REST",
    "SAMPLE_RATE",
    "Voice",
    "mouth_tracks",
    "phoneme_arrays",
    "random_script",
    "synthesize",
]
