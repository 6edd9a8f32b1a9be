"""MFCCs with python_speech_features' default parameters (the input syncnet_python uses).

16 kHz, 25 ms frames every 10 ms (100 Hz), rectangular window, pre-emphasis 0.97, 512-point
FFT power spectrum / 512, 26 triangular mel filters over 0 .. 8 kHz, log, orthonormal DCT-II
keeping 13 coefficients, sinusoidal lifter 22, and coefficient 0 replaced by the log frame
energy. The last frame is zero-padded, so there are 1 + ceil((L - 400) / 160) frames.
Differences from the reference: none intended; computed in float64 with numpy/scipy.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dct

EPS = np.finfo(float).eps


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(nfilt: int = 26, nfft: int = 512, sr: int = 16_000) -> np.ndarray:
    """(nfilt, nfft // 2 + 1) triangular filters on FFT bins floor((nfft + 1) f / sr)."""
    mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz(mels) / sr).astype(int)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        fb[j, lo:mid] = (np.arange(lo, mid) - lo) / max(mid - lo, 1)
        fb[j, mid:hi] = (hi - np.arange(mid, hi)) / max(hi - mid, 1)
    return fb


def mfcc(signal: np.ndarray, sr: int = 16_000, numcep: int = 13, nfft: int = 512) -> np.ndarray:
    """(M, 13) MFCCs of a mono waveform at 100 Hz."""
    x = np.asarray(signal, np.float64)
    x = np.append(x[0], x[1:] - 0.97 * x[:-1])  # pre-emphasis
    flen, step = round(0.025 * sr), round(0.010 * sr)
    n = 1 if len(x) <= flen else 1 + int(np.ceil((len(x) - flen) / step))
    x = np.pad(x, (0, (n - 1) * step + flen - len(x)))
    idx = np.arange(flen)[None] + step * np.arange(n)[:, None]
    power = np.abs(np.fft.rfft(x[idx], nfft)) ** 2 / nfft  # (M, nfft/2+1)
    energy = power.sum(1)
    energy[energy == 0] = EPS
    feat = power @ mel_filterbank(26, nfft, sr).T
    feat[feat == 0] = EPS
    cep = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :numcep]
    cep *= 1 + 11.0 * np.sin(np.pi * np.arange(numcep) / 22.0)  # lifter L = 22
    cep[:, 0] = np.log(energy)
    return cep


__all__ = ["mel_filterbank", "mfcc"]
