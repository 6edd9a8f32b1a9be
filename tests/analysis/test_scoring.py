"""Mouth-region scores: LPIPS with cached ground-truth features equals the LPIPS module, only the
mouth region counts, and clips are encoded as the training cache encodes them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analysis_helpers import PoolCodec, fake_shards, toy_preset

from lipforcing.analysis.scoring import (
    Clip,
    MouthScorer,
    lpips_input,
    mouth_box,
    prepare_clip,
    select_windows,
)
from lipforcing.data.datasets import ShardDataset
from lipforcing.errors import UserError
from lipforcing.evaluation.image_metrics import ssim
from lipforcing.evaluation.lpips import LPIPS
from lipforcing.evaluation.syncnet import LipSyncNet, SyncNetV2


@pytest.fixture(scope="module")
def lpips():
    return LPIPS("alex")


def toy_clip(t=5, s=32, seed=0) -> Clip:
    rng = np.random.default_rng(seed)
    mask = np.zeros((s, s), np.float32)
    mask[18:, 4:28] = 1
    gt = rng.integers(0, 255, (t, s, s, 3), dtype=np.uint8)
    return Clip("c@0", 0, None, None, gt, mask, torch.zeros(t, 8), None)


def test_cached_lpips_equals_the_lpips_module(lpips):
    clip = toy_clip()
    rng = np.random.default_rng(1)
    top, bottom, left, right = mouth_box(clip.mask)
    assert (top, bottom, left, right) == (18, 32, 4, 28)
    gt = clip.gt[:, top:bottom, left:right]
    pred = rng.integers(0, 255, (2 * len(gt), *gt.shape[1:]), dtype=np.uint8)
    got = MouthScorer(None, lpips).mouth_lpips(pred, gt, clip.id)
    ref = lpips(lpips_input(pred), lpips_input(np.concatenate([gt, gt])))
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_only_the_mouth_region_is_scored(lpips):
    clip = toy_clip()
    scorer = MouthScorer(None, lpips)
    outside = clip.gt.copy()
    outside[:, :18] = 255 - outside[:, :18]  # wrong everywhere except the mouth region
    inside = clip.gt.copy()
    inside[:, 20:30, 6:26] = 0
    perfect, hurt = scorer.score_frames(np.stack([outside, inside]), clip)
    assert perfect["lpips"] == pytest.approx(0, abs=1e-6) and perfect["ssim"] == pytest.approx(1)
    box = (slice(None), slice(18, 32), slice(4, 28))
    assert hurt["ssim"] == pytest.approx(ssim(inside[box], clip.gt[box]).mean())
    assert hurt["lpips"] > 0.05 and scorer.metrics == ("lpips", "ssim")


def test_prepare_clip_matches_the_training_cache_and_windows_round_robin(tmp_path):
    preset = toy_preset()
    ds = ShardDataset(fake_shards(tmp_path, preset, clips=2), latent_frames=3)
    assert select_windows(ds, 3) == [0, 2, 1]  # clip0@0, clip1@0, clip0@9
    clip = prepare_clip(ds, 2, PoolCodec(), pack=4)
    item = ds[2]
    assert clip.id == "clip1@0" and clip.gt.shape == (9, 32, 32, 3)
    torch.testing.assert_close(clip.x0, PoolCodec().encode(item["video"][None]))
    np.testing.assert_array_equal(
        clip.gt, ((item["video"] + 1) * 127.5).round().byte().permute(1, 2, 3, 0).numpy()
    )
    assert clip.cond.audio.shape == (1, 12, preset.audio.feature_dim)
    assert clip.waveform.shape == (9 * 640,)  # 9 frames of 16 kHz audio at 25 fps
    np.testing.assert_array_equal(clip.waveform, ds.shards[1][0]["audio"][: 9 * 640])


def test_sync_is_the_valid_pair_offset_search(lpips):
    """Sync-D / Sync-C against a direct loop over offsets and window pairs (numpy)."""
    torch.manual_seed(0)
    net = LipSyncNet().eval()
    rng = np.random.default_rng(2)
    t, s = 13, 32
    clip = toy_clip(t=t, s=s)
    clip.features = torch.from_numpy(rng.standard_normal((t, net.cfg.audio_dim)).astype(np.float32))
    frames = rng.integers(0, 255, (t, s, s, 3), dtype=np.uint8)
    scorer = MouthScorer(None, lpips, net, max_shift=3)
    got = scorer.sync(frames, clip)
    with torch.no_grad():
        v = net.video_windows(torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1)
        a = net.embed_audio(clip.features[2 : t - 2])
    v, a = v.numpy(), a.numpy()
    n = len(v)
    dist = [
        np.mean([np.linalg.norm(v[i] - a[i + k]) for i in range(n) if 0 <= i + k < n])
        for k in range(-3, 4)
    ]
    assert got["sync_d"] == pytest.approx(min(dist), rel=1e-5)
    assert got["sync_c"] == pytest.approx(np.median(dist) - min(dist), abs=1e-5)


def test_syncnet_v2_reads_the_window_waveform(lpips):
    torch.manual_seed(0)
    net = SyncNetV2().eval()
    clip = toy_clip(t=9)
    clip.waveform = np.random.default_rng(3).standard_normal(9 * 640).astype(np.float32) * 0.1
    scorer = MouthScorer(None, lpips, net)
    assert scorer.sync_audio(clip) is clip.waveform
    got = scorer.sync(clip.gt, clip)
    assert np.isfinite(got["sync_d"]) and got["sync_c"] >= 0
    clip.waveform = None
    with pytest.raises(UserError, match="audio.npy"):
        scorer.sync(clip.gt, clip)
