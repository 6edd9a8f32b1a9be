"""SyncNet reward weighting of the generator loss (spec section 7, step 6).

w = exp(beta * R), beta = 2, with R the raw (stop-gradient) SyncNet confidence of the decoded
x0 prediction against the conditioning audio. The reward never back-propagates: it only scales
the DMD loss of each sample.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

RewardFn = Callable[[Tensor, dict], Tensor]  # (x0 latents (B, C, F, h, w), batch) -> R (B,)


def reward_weight(reward: Tensor, beta: float = 2.0) -> Tensor:
    """w = exp(beta * R), computed without gradient. (B,) -> (B,)."""
    return torch.exp(beta * reward.detach().float())


def syncnet_reward(codec, syncnet, audio_key: str = "audio") -> RewardFn:
    """R = our LipSyncNet's confidence on codec-decoded crops vs the batch's per-frame audio.

    ``batch[audio_key]`` holds per-video-frame features (B, T, A) with T = 1 + 4 (F - 1).
    """
    from lipforcing.evaluation.sync import sync_confidence

    @torch.no_grad()
    def reward(x0: Tensor, batch: dict) -> Tensor:
        video = codec.decode(x0.detach().float()).clamp(-1, 1)  # (B, 3, T, S, S)
        return sync_confidence(syncnet, video, batch[audio_key]).float()

    return reward
