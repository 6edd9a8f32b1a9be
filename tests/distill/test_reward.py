"""The Stage-2 reward: SyncNet-v2 on decoded crops against the raw waveform (oracle: the
release's scoring written out step by step), our LipSyncNet at the tiny preset, the shaping
switches, no gradient through any of it, and the bad-input messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from distill_helpers import toy_batch, toy_model
from test_recipe import PoolCodec

from lipforcing.config import CausalConfig, DMDConfig, RewardConfig, ScheduleConfig, tiny
from lipforcing.distill.dmd import student_step
from lipforcing.distill.draws import Draws
from lipforcing.distill.reward import (
    RewardShaper,
    check_reward_inputs,
    load_reward_syncnet,
    syncnet_reward,
)
from lipforcing.errors import CheckpointError, UserError
from lipforcing.evaluation.sync import sync_confidence
from lipforcing.evaluation.syncnet import LipSyncNet, LipSyncNetConfig, SyncNetV2

FRAMES = 9  # 3 latent frames -> 1 + 4 * 2 video frames


def release_sync_c(net: SyncNetV2, video: torch.Tensor, wave: np.ndarray, vshift: int) -> float:
    """The release's SyncCScorer on one clip: uint8 frames -> 224 bilinear -> BGR 0..255,
    5-frame windows, MFCC windows of the waveform, median - min over shifts of the mean
    pairwise distance of the overlapping windows."""
    u8 = ((video.clamp(-1, 1) + 1) * 127.5).to(torch.uint8)  # (3, T, S, S)
    frames = F.interpolate(u8.transpose(0, 1).float(), size=(224, 224), mode="bilinear")
    frames = frames[:, [2, 1, 0]]  # (T, 3, 224, 224) BGR
    clip = frames.permute(1, 0, 2, 3)[None]  # (1, 3, T, 224, 224)
    wins = clip.unfold(2, 5, 1)[0].permute(1, 0, 4, 2, 3)  # (N, 3, 5, 224, 224)
    lip = net.forward_lip(wins)
    aud = net.audio_windows(wave, video.shape[1])
    n = min(len(lip), len(aud))
    lip, aud = lip[:n], aud[:n]
    dists = []
    for s in range(-vshift, vshift + 1):
        if s < 0:
            a, b = lip[-s:], aud[: n + s]
        elif s > 0:
            a, b = lip[: n - s], aud[s:]
        else:
            a, b = lip, aud
        dists.append(F.pairwise_distance(a, b).mean())
    d = torch.stack(dists)
    return float(d.median() - d.min())


@pytest.fixture(scope="module")
def syncnet_v2():
    torch.manual_seed(0)
    return SyncNetV2().eval()


def latents_and_wave(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(batch, 16, 3, 4, 4, generator=g)
    wave = (0.1 * torch.randn(batch, FRAMES * 640, generator=g)).float()
    return x0, wave


def test_syncnet_v2_reward_is_the_release_sync_c_of_the_decoded_crop(syncnet_v2):
    codec = PoolCodec()
    x0, wave = latents_and_wave(2)
    cfg = RewardConfig(vshift=3)
    with torch.no_grad():
        r = syncnet_reward(codec, syncnet_v2, cfg)(x0, {"wave": wave})
        video = codec.decode(x0).clamp(-1, 1)
        want = [release_sync_c(syncnet_v2, video[i], wave[i].numpy(), 3) for i in range(2)]
    assert r.shape == (2,) and not r.requires_grad
    torch.testing.assert_close(r, torch.tensor(want), rtol=1e-3, atol=1e-4)


def test_syncnet_v2_reward_reads_the_waveform_not_the_model_features(syncnet_v2):
    codec = PoolCodec()
    x0, wave = latents_and_wave(1)
    fn = syncnet_reward(codec, syncnet_v2, RewardConfig(vshift=3))
    a = fn(x0, {"wave": wave, "audio": torch.zeros(1, FRAMES, 10752)})
    b = fn(x0, {"wave": wave, "audio": torch.ones(1, FRAMES, 10752)})
    c = fn(x0, {"wave": wave.flip(-1), "audio": torch.zeros(1, FRAMES, 10752)})
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_lipsyncnet_reward_at_zero_is_the_tiny_recipe_confidence():
    torch.manual_seed(0)
    net = LipSyncNet(LipSyncNetConfig()).eval()
    codec, p = PoolCodec(), tiny()
    x0 = torch.randn(2, 16, 6, 16, 16, requires_grad=True)
    audio = torch.randn(2, 21, p.audio.feature_dim)
    r = syncnet_reward(codec, net, RewardConfig(score="at_zero", vshift=6))(x0, {"audio": audio})
    expect = sync_confidence(net, codec.decode(x0.detach()).clamp(-1, 1), audio)
    assert r.shape == (2,) and not r.requires_grad
    torch.testing.assert_close(r, expect)


def test_no_gradient_flows_through_the_reward(syncnet_v2):
    """The student's loss with the SyncNet-v2 reward: d loss / d x_hat is exactly w * the DMD
    gradient; the SyncNet, the codec and the critic get no gradient."""
    codec = PoolCodec()
    codec.net = torch.nn.Conv3d(16, 16, 1)  # a trainable part that must stay untouched
    student, teacher, critic = toy_model(), toy_model(seed=1), toy_model(seed=2)
    batch = toy_batch(2, 3)
    batch["wave"] = latents_and_wave(2)[1]
    cfg = DMDConfig(num_chunks=1, reward=RewardConfig(vshift=3))
    reward = syncnet_reward(codec, syncnet_v2, cfg.reward)
    loss, metrics = student_step(
        student,
        teacher,
        critic,
        batch,
        cfg,
        CausalConfig(),
        ScheduleConfig(),
        Draws.for_micro_batch(0, 0, 0, 2),
        reward,
        RewardShaper(cfg.reward),
    )
    loss.backward()
    assert all(p.grad is None for p in syncnet_v2.parameters())
    assert all(p.grad is None for p in critic.parameters())
    assert all(p.grad is None for p in codec.net.parameters())
    assert any(p.grad is not None for p in student.parameters())
    assert metrics["weight"] > 0 and "reward" in metrics


def test_shaping_switches():
    r = torch.tensor([0.5, 1.5, -1.0])
    plain = RewardShaper(RewardConfig(beta=2.0))
    losses = torch.tensor([1.0, 2.0, 4.0])
    loss, w = plain.loss(losses, r)
    torch.testing.assert_close(w, torch.exp(2 * r))
    torch.testing.assert_close(loss, (w * losses).mean())
    norm = RewardShaper(RewardConfig(beta=2.0, normalise="self_normalised"))
    loss_n, _ = norm.loss(losses, r)
    torch.testing.assert_close(loss_n, (w * losses).sum() / w.sum())
    torch.testing.assert_close(norm.loss(losses, r + 7.0)[0], loss_n)  # shift-invariant
    clamp = RewardShaper(RewardConfig(clamp=(-0.2, 0.8)))
    torch.testing.assert_close(clamp.shape(r), torch.tensor([0.5, 0.8, -0.2]))
    centre = RewardShaper(RewardConfig(centre=True, centre_momentum=0.9))
    torch.testing.assert_close(centre.shape(r), r - r.mean())  # first step: its own mean
    centre.after_step("student", {"reward": 1.0})
    centre.after_step("critic", {"reward": 9.0})  # critic steps carry no reward
    centre.after_step("student", {"reward": 2.0})
    assert centre.mean == pytest.approx(0.9 * 1.0 + 0.1 * 2.0)
    torch.testing.assert_close(centre.shape(r), r - 1.1)
    restored = RewardShaper(centre.cfg)
    restored.load_state_dict(centre.state_dict())
    assert restored.mean == centre.mean


def test_bad_reward_inputs_are_one_message(tmp_path, syncnet_v2):
    cache = {"audio": torch.zeros(2, 21, 10752)}
    with pytest.raises(UserError, match="SyncNet-v2 reward scores the raw waveform"):
        check_reward_inputs(syncnet_v2, cache)
    with pytest.raises(UserError, match="640 samples per frame"):
        check_reward_inputs(
            syncnet_v2, {**cache, "wave": torch.zeros(2, 100), "samples_per_frame": 441}
        )
    net = LipSyncNet(LipSyncNetConfig())
    with pytest.raises(UserError, match=r"640-d log-mel windows.*10752-d"):
        check_reward_inputs(net, cache)
    wrong = tmp_path / "syncnet_v2.model"
    torch.save({"conv.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(CheckpointError, match="not syncnet_python's SyncNet weights"):
        load_reward_syncnet(wrong)
