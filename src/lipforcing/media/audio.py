"""Audio features aligned to video frames: weight-free log-mel windows or wav2vec2 states.

Design choices:
- Video frame i covers the samples [i * sr / fps, (i + 1) * sr / fps). Its mel window is the
  ``(2 * context_frames + 1) * mel_frames_per_video_frame`` consecutive mel frames that start
  ``context_frames`` video frames before it, so the window is centred on the frame; mel frames
  before the start or past the end of the audio repeat the edge frame (edge padding). The
  feature is the flattened (n_mels, window) block: ``AudioConfig.feature_dim`` values.
- Log-mel scale is fixed, ``log10(power + 1e-8) / 4`` (about [-2, 1]), never normalised by the
  clip's own maximum, so a feature depends only on nearby audio: features of a stream computed
  window by window match the whole-clip features away from the window edges.
- The spectrogram is ``torch.stft`` (periodic Hann window, zero-padded centred frames, power 2)
  times a Slaney-style mel filter bank (librosa's default: Slaney mel scale, area-normalised
  triangles), built once per (rate, n_fft, n_mels) and cached. librosa's own
  ``melspectrogram`` is the test oracle only: importing it at run time costs seconds of
  numba compilation on a first run (a 38 s first chunk was measured).
- wav2vec2 follows OmniAvatar: the convolutional features are linearly interpolated
  (align_corners) to exactly one vector per video frame before the transformer encoder, and the
  last hidden state is concatenated with all hidden states (embedding output + every layer):
  768 x 14 = 10752 values per frame for wav2vec2-base. The model is loaded from a local
  directory only; nothing is downloaded.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lipforcing.config import AudioConfig
from lipforcing.errors import UserError

N_FFT = 400  # 25 ms analysis window at 16 kHz
LOG_FLOOR = 1e-8
SLANEY_HZ_PER_MEL = 200.0 / 3  # linear part of Slaney's mel scale
SLANEY_BREAK_HZ = 1000.0  # where it turns logarithmic
SLANEY_LOGSTEP = float(np.log(6.4) / 27)  # 27 mel steps per factor 6.4 above the break


def _check(wav: np.ndarray, num_frames: int) -> np.ndarray:
    wav = np.asarray(wav, np.float32).reshape(-1)
    if not len(wav):
        raise UserError("audio is empty (zero samples)")
    if num_frames < 1:
        raise UserError(f"need at least one video frame, got {num_frames}")
    return wav


def log_mel(wav: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """(n_mels, M) log-mel spectrogram; mel frame j is centred on sample j * mel_hop."""
    x = torch.from_numpy(np.ascontiguousarray(wav, np.float32))
    spec = torch.stft(
        x,
        n_fft=N_FFT,
        hop_length=cfg.mel_hop,
        window=_hann(N_FFT),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )  # (n_fft // 2 + 1, M)
    power = spec.abs().square()
    mel = _mel_filters(cfg.sample_rate, N_FFT, cfg.n_mels) @ power  # (n_mels, M)
    return (torch.log10(mel + LOG_FLOOR) / 4.0).numpy()


@functools.cache
def _hann(n: int) -> torch.Tensor:
    return torch.hann_window(n, periodic=True, dtype=torch.float32)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    f = np.asarray(f, np.float64)
    mel = f / SLANEY_HZ_PER_MEL
    log = f >= SLANEY_BREAK_HZ
    mel[log] = (
        SLANEY_BREAK_HZ / SLANEY_HZ_PER_MEL + np.log(f[log] / SLANEY_BREAK_HZ) / SLANEY_LOGSTEP
    )
    return mel


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    f = m * SLANEY_HZ_PER_MEL
    brk = SLANEY_BREAK_HZ / SLANEY_HZ_PER_MEL
    log = m >= brk
    f[log] = SLANEY_BREAK_HZ * np.exp(SLANEY_LOGSTEP * (m[log] - brk))
    return f


@functools.cache
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangles evenly spaced on the mel scale from 0 Hz to
    Nyquist, each scaled to unit area (2 / bandwidth in Hz), float32."""
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(np.array([sample_rate / 2]))[0], n_mels + 2))
    width = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / width[:-1, None]
    falling = ramps[2:] / width[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def mel_windows(wav: np.ndarray, cfg: AudioConfig, num_frames: int) -> np.ndarray:
    """Per-video-frame log-mel windows, (T, feature_dim) float32."""
    wav = _check(wav, num_frames)
    mel = log_mel(wav, cfg)  # (n_mels, M)
    per = cfg.mel_frames_per_video_frame
    width = (2 * cfg.context_frames + 1) * per
    hop_per_frame = cfg.sample_rate / cfg.fps / cfg.mel_hop  # mel frames per video frame
    starts = np.rint(np.arange(num_frames) * hop_per_frame).astype(int) - cfg.context_frames * per
    idx = np.clip(starts[:, None] + np.arange(width)[None], 0, mel.shape[1] - 1)  # (T, width)
    windows = mel[:, idx]  # (n_mels, T, width)
    return np.ascontiguousarray(windows.transpose(1, 0, 2).reshape(num_frames, -1))


def audio_features(
    wav: np.ndarray, cfg: AudioConfig, num_frames: int, *, wav2vec2: Wav2Vec2Features | None = None
) -> np.ndarray:
    """Features of ``num_frames`` video frames from 16 kHz mono audio: (T, A) float32.

    ``cfg.kind == "wav2vec2"`` needs a loaded :class:`Wav2Vec2Features` (weights are the
    user's); the mel kind needs nothing.
    """
    if cfg.kind == "mel":
        return mel_windows(wav, cfg, num_frames)
    if wav2vec2 is None:
        raise UserError("wav2vec2 audio features need a local wav2vec2 model (--wav2vec2 DIR)")
    return wav2vec2(wav, num_frames)


class Wav2Vec2Features:
    """OmniAvatar-style wav2vec2 features from a local Hugging Face model directory."""

    def __init__(self, model_dir: str | Path, device: str | torch.device = "cpu") -> None:
        from transformers import Wav2Vec2Model

        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: not a wav2vec2 model directory (no config.json)")
        try:
            self.model = Wav2Vec2Model.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: cannot load wav2vec2 weights ({e})") from None
        self.model.eval().to(device)
        self.device = torch.device(device)
        cfg = self.model.config
        self.feature_dim = cfg.hidden_size * (cfg.num_hidden_layers + 2)

    @torch.inference_mode()
    def __call__(self, wav: np.ndarray, num_frames: int, *, normalize: bool = True) -> np.ndarray:
        """(T, hidden * (layers + 2)) float32 features for ``num_frames`` video frames.

        ``normalize=False``: ``wav`` is already zero-mean / unit-variance (the caller normalised
        it before padding, as the release does for a whole clip)."""
        wav = _check(wav, num_frames)
        x = torch.from_numpy(wav)[None].to(self.device)  # (1, N)
        if normalize:
            x = normalized(x)  # the feature extractor's normalisation

        # OmniAvatar interpolates the convolutional features to the frame count before the
        # encoder; a forward hook does that inside the stock model, which then collects the
        # hidden states itself.
        def to_frames(module, inputs, conv):  # conv: (1, C, L)
            return F.interpolate(conv, size=num_frames, mode="linear", align_corners=True)

        handle = self.model.feature_extractor.register_forward_hook(to_frames)
        try:
            out = self.model(x, output_hidden_states=True)
        finally:
            handle.remove()
        states = [out.last_hidden_state, *out.hidden_states]  # 1 + (layers + 1) states
        return torch.cat(states, -1)[0].float().cpu().numpy()  # (T, D * (layers + 2))


def normalized(x):
    """Zero mean, unit variance (Wav2Vec2FeatureExtractor's do_normalize, eps 1e-7)."""
    return (x - x.mean()) / (x.var() + 1e-7) ** 0.5


def whole_clip_features(
    wav: np.ndarray, cfg: AudioConfig, num_frames: int, *, wav2vec2: Wav2Vec2Features
) -> np.ndarray:
    """wav2vec2 features of a whole clip as the release computes them: (num_frames, A).

    The audio is normalised, zero-padded to whole video frames (``ceil(len / spf)`` of them, at
    least ``num_frames``) and encoded once at that frame count, then cut to ``num_frames``;
    every frame sees the whole clip (the windowed form sees +-``stream_margin`` frames).
    """
    wav = _check(wav, num_frames)
    spf = round(cfg.sample_rate / cfg.fps)
    total = max(-(-len(wav) // spf), num_frames)
    padded = np.zeros(total * spf, np.float32)
    padded[: len(wav)] = normalized(wav.astype(np.float64)).astype(np.float32)
    return wav2vec2(padded, total, normalize=False)[:num_frames]


__all__ = ["Wav2Vec2Features", "audio_features", "log_mel", "mel_windows", "whole_clip_features"]
