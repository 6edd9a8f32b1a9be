"""The reward wiring against the evaluation part's real LipSyncNet and sync_confidence."""

from __future__ import annotations

import torch
from test_recipe import PoolCodec

from lipforcing.config import tiny
from lipforcing.distill.reward import syncnet_reward
from lipforcing.evaluation.sync import sync_confidence
from lipforcing.evaluation.syncnet import LipSyncNet, LipSyncNetConfig


def test_syncnet_reward_is_sync_confidence_of_the_decoded_latents():
    torch.manual_seed(0)
    net = LipSyncNet(LipSyncNetConfig()).eval()
    codec, p = PoolCodec(), tiny()
    x0 = torch.randn(2, 16, 6, 16, 16, requires_grad=True)
    audio = torch.randn(2, 21, p.audio.feature_dim)
    r = syncnet_reward(codec, net)(x0, {"audio": audio})
    expect = sync_confidence(net, codec.decode(x0.detach()).clamp(-1, 1), audio)
    assert r.shape == (2,) and not r.requires_grad
    torch.testing.assert_close(r, expect)
