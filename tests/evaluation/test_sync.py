"""Sync scoring: MFCC vs python_speech_features, offset search on analytic fakes, the SyncNet
architectures (random weights) and the reward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lipforcing.errors import CheckpointError, UserError
from lipforcing.evaluation.mfcc import mfcc
from lipforcing.evaluation.sync import sync_confidence, sync_search, valid_shift_distances
from lipforcing.evaluation.syncnet import (
    LipSyncNet,
    LipSyncNetConfig,
    SyncNetV2,
    load_syncnet,
    load_syncnet_v2,
    save_syncnet,
)


def test_mfcc_matches_python_speech_features():
    psf = pytest.importorskip("python_speech_features")
    rng = np.random.default_rng(0)
    t = np.arange(16_000 * 1.3) / 16_000
    wav = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.shape)
    ref = psf.mfcc(wav, 16_000)
    ours = mfcc(wav)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)


class ShiftFake(nn.Module):
    """Video window i embeds as one-hot(i); audio window i as one-hot(i + k): the sound of
    frame i sits at audio window i - k, i.e. audio is shifted by -k frames."""

    normalised = True

    def __init__(self, k: int, dim: int = 64) -> None:
        super().__init__()
        self.k, self.dim = k, dim
        self.p = nn.Parameter(torch.zeros(1))

    def video_windows(self, video):
        n = video.shape[1] - 4
        return torch.eye(self.dim)[torch.arange(n) + 20]

    def audio_windows(self, audio, num_frames):
        n = num_frames - 4
        return torch.eye(self.dim)[torch.arange(n) + 20 + self.k]


@pytest.mark.parametrize("k", [-5, -2, 0, 3, 7])
def test_offset_search_finds_known_shift(k):
    frames = np.zeros((30, 8, 8, 3), np.uint8)
    r = sync_search(ShiftFake(k), frames, None, vshift=15)
    # audio window i + s matches video i at s = -k; offset = vshift - argmin = -s = k
    assert r.offset == k
    assert r.distances.shape == (31,)
    assert r.sync_d == pytest.approx(r.distances.min())
    assert r.sync_c > 0.5


def test_reward_peaks_in_sync():
    torch.manual_seed(0)
    model = LipSyncNet(LipSyncNetConfig(n_mels=8, width=8, embed_dim=16)).eval()
    video = torch.rand(2, 3, 13, 32, 32) * 2 - 1
    audio = torch.randn(2, 13, 8 * 20)
    r = sync_confidence(model, video, audio)
    assert r.shape == (2,) and not r.requires_grad
    # oracle: with identical video/audio embeddings along a diagonal, shift 0 is best
    v = torch.eye(16)[:9][None]
    d = valid_shift_distances(v, v, 4)
    assert d[0].argmin() == 4 and d[0, 4] == 0
    with pytest.raises(UserError):
        sync_confidence(model, video, audio[:, :10])


def test_syncnet_v2_shapes_and_loading(tmp_path):
    torch.manual_seed(0)
    model = SyncNetV2().eval()
    names = {k.split(".")[0] for k in model.state_dict()}
    assert names == {"netcnnaud", "netfcaud", "netcnnlip", "netfclip"}
    # syncnet_python's layer shapes: first lip conv (96, 3, 5, 7, 7), last audio conv 5x4
    assert model.netcnnlip[0].weight.shape == (96, 3, 5, 7, 7)
    assert model.netcnnaud[-3].weight.shape == (512, 256, 5, 4)
    path = tmp_path / "syncnet_v2.model"
    torch.save(model.state_dict(), path)
    loaded = load_syncnet_v2(path)
    frames = np.random.default_rng(0).integers(0, 255, (7, 64, 64, 3), np.uint8)
    wav = np.random.default_rng(1).standard_normal(16_000 * 7 // 25).astype(np.float32)
    r = sync_search(loaded, frames, wav, vshift=2)
    assert r.distances.shape == (5,) and np.isfinite(r.distances).all()
    bad = tmp_path / "bad.model"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError):
        load_syncnet_v2(bad)


def test_lipsyncnet_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = LipSyncNet(LipSyncNetConfig(n_mels=8, width=8, embed_dim=16)).eval()
    save_syncnet(model, tmp_path / "s.safetensors")
    loaded = load_syncnet(tmp_path / "s.safetensors")
    x = torch.rand(3, 3, 5, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded.embed_video(x), model.embed_video(x))
    with pytest.raises(CheckpointError):
        load_syncnet(tmp_path / "missing.safetensors")
