"""SyncNet-v2 audio input exactly as syncnet_python computes it: MFCCs of the int16 samples
(python_speech_features is the oracle), 20-step windows at 4 i, min(T, floor(L / 640)) - 5."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io.wavfile
import torch

from lipforcing.evaluation.syncnet import SyncNetV2, syncnet_v2_audio_input
from lipforcing.media.io import read_audio

psf = pytest.importorskip("python_speech_features")


def speech_like_int16(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    voice = np.sin(2 * np.pi * (150 + 80 * np.sin(2 * np.pi * 3 * t)) * t)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    x = 9000 * envelope * voice + 800 * rng.standard_normal(len(t))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def syncnet_python_windows(pcm: np.ndarray, num_frames: int) -> np.ndarray:
    """What syncnet_python's SyncNetInstance.evaluate feeds netcnnaud, step by step."""
    mfcc = np.stack([np.array(i) for i in zip(*psf.mfcc(pcm, 16000))])  # (13, M)
    cct = mfcc[None, None]
    min_length = min(num_frames, int(np.floor(len(pcm) / 640)))
    lastframe = min_length - 5
    return np.concatenate([cct[:, :, :, 4 * v : 4 * v + 20] for v in range(lastframe)])


def test_audio_input_matches_syncnet_python(tmp_path):
    pcm = speech_like_int16(2.3)
    scipy.io.wavfile.write(tmp_path / "a.wav", 16000, pcm)
    wav = read_audio(tmp_path / "a.wav")  # float32 in [-1, 1], as every command reads audio
    for frames in (40, 57, 80):  # fewer video frames than audio, and more
        ours = syncnet_v2_audio_input(wav, frames).numpy()
        ref = syncnet_python_windows(pcm, frames)
        assert ours.shape == ref.shape
        assert np.allclose(ours, ref, atol=1e-4, rtol=1e-5), np.abs(ours - ref).max()
    # the float-scale input of before differs (coefficient 0 is a log energy)
    bad = psf.mfcc(pcm / 32768.0, 16000)[:20, 0]
    assert np.abs(bad - ref[0, 0, 0, :20]).min() > 15


def test_syncnet_v2_scores_use_the_int16_input():
    torch.manual_seed(0)
    net = SyncNetV2().eval()
    pcm = speech_like_int16(1.0)
    with torch.no_grad():
        emb = net.audio_windows(pcm.astype(np.float32) / 32768, 25)
        ref = net.forward_aud(torch.from_numpy(syncnet_python_windows(pcm, 25)).float())
    assert emb.shape == (20, 1024) and torch.allclose(emb, ref, atol=1e-4)
