"""The SyncNet reward of Stage 2 (spec section 7, step 6): w = exp(beta * R), stop-gradient.

R scores the decoded x0 prediction of the student against the window's speech:

- SyncNet-v2 (syncnet_python's network, the release's and the paper's): the codec decodes the
  latents to the aligned face crops, which are quantised to 8 bits as the release does, resized
  to 224 x 224 (BGR, 0..255 inside :class:`SyncNetV2`), and compared with MFCC windows of the
  window's *raw waveform* (``batch["wave"]``): the reward has its own audio path and never reads
  the model's audio features (wav2vec2 at Wan scale).
- Our LipSyncNet (tiny preset): the decoded crops against the batch's per-frame log-mel
  features, which at the tiny preset are exactly the windows it was trained on.

Scores (``RewardConfig.score``), over audio shifts -vshift..vshift using valid pairs only:
``sync_c`` = median - min of the per-shift mean distances (raw Sync-C, paper and release);
``at_zero`` = median - distance at shift 0 (ours). Optional shaping (release switches):
centring by a running mean, clamping, and self-normalised weights. Everything here runs under
``no_grad`` on detached inputs: the reward only scales each sample's DMD loss.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from lipforcing.config import RewardConfig
from lipforcing.errors import UserError

RewardFn = Callable[[Tensor, dict], Tensor]  # (x0 latents (B, C, F, h, w), batch) -> R (B,)
MEL_STEPS = 20  # LipSyncNet audio window: 20 mel frames (0.2 s)


def reward_weight(reward: Tensor, beta: float = 2.0) -> Tensor:
    """w = exp(beta * R), computed without gradient. (B,) -> (B,)."""
    return torch.exp(beta * reward.detach().float())


def shift_scores(v: Tensor, a: Tensor, vshift: int) -> tuple[Tensor, Tensor]:
    """(Sync-C, confidence at shift 0) of one clip from video / audio window embeddings."""
    from lipforcing.evaluation.sync import valid_shift_distances

    n = min(len(v), len(a))
    k = min(vshift, n - 1)
    dist = valid_shift_distances(v[None, :n].float(), a[None, :n].float(), k)[0]  # (2k + 1,)
    median = dist.median()
    return median - dist.min(), median - dist[k]


def _pick(scores: tuple[Tensor, Tensor], cfg: RewardConfig) -> Tensor:
    return scores[0] if cfg.score == "sync_c" else scores[1]


def syncnet_reward(codec, syncnet, cfg: RewardConfig | None = None) -> RewardFn:
    """R of decoded latents for SyncNet-v2 (raw waveform) or our LipSyncNet (mel features)."""
    from lipforcing.evaluation.syncnet import SyncNetV2

    cfg = cfg or RewardConfig()
    score = _score_v2 if isinstance(syncnet, SyncNetV2) else _score_lipsyncnet

    @torch.no_grad()
    def reward(x0: Tensor, batch: dict) -> Tensor:
        video = codec.decode(x0.detach().float()).clamp(-1, 1)  # (B, 3, T, S, S)
        rows = [
            _pick(score(syncnet, video[i], batch, i, cfg.vshift), cfg) for i in range(len(video))
        ]
        return torch.stack(rows).float().cpu()

    return reward


def _score_v2(net, video: Tensor, batch: dict, i: int, vshift: int) -> tuple[Tensor, Tensor]:
    """SyncNet-v2 on the 8-bit crop (the release casts to uint8) against the raw waveform."""
    pixels = torch.floor((video + 1) * 127.5).clamp(0, 255) / 127.5 - 1  # uint8 levels
    v = net.video_windows(pixels.to(next(net.parameters())))
    a = net.audio_windows(batch["wave"][i].numpy().astype(np.float32), video.shape[1])
    return shift_scores(v, a, vshift)


def _score_lipsyncnet(
    net, video: Tensor, batch: dict, i: int, vshift: int
) -> tuple[Tensor, Tensor]:
    v = net.video_windows(video.to(net.logit_scale))
    a = net.audio_windows(batch["audio"][i], video.shape[1])
    return shift_scores(v, a, vshift)


def check_reward_inputs(syncnet, cache: dict) -> None:
    """One clear message, before any step, when the reward cannot read this cache's audio."""
    from lipforcing.evaluation.syncnet import SyncNetV2

    if isinstance(syncnet, SyncNetV2):
        if "wave" not in cache:
            raise UserError(
                "the SyncNet-v2 reward scores the raw waveform, but this latent cache holds no "
                "'wave' (rebuild it from shards that have audio.npy)"
            )
        per_frame = int(cache["samples_per_frame"])
        if per_frame != 640:
            raise UserError(
                f"SyncNet-v2 reads 16 kHz audio at 25 fps (640 samples per frame); this cache "
                f"has {per_frame} samples per video frame"
            )
        return
    need = syncnet.cfg.n_mels * MEL_STEPS
    have = cache["audio"].shape[-1]
    if have != need:
        raise UserError(
            f"our LipSyncNet reward reads {need}-d log-mel windows ({syncnet.cfg.n_mels} mels x "
            f"{MEL_STEPS} steps); this cache's audio features are {have}-d (use SyncNet-v2, "
            f"which reads the raw waveform, at this preset)"
        )


class RewardShaper:
    """Centring / clamping of R and the weighted loss; a loop hook (state: the running mean).

    Centring subtracts the running mean of R over past student steps (ours: the mean before
    this step, so an update does not depend on how its batch is split; at the first step the
    micro-batch's own mean, as the release starts).
    """

    def __init__(self, cfg: RewardConfig) -> None:
        self.cfg = cfg
        self.mean: float | None = None

    def shape(self, reward: Tensor) -> Tensor:
        r = reward.detach().float()
        if self.cfg.centre:
            r = r - (self.mean if self.mean is not None else r.mean())
        if self.cfg.clamp is not None:
            r = r.clamp(*self.cfg.clamp)
        return r

    def loss(self, per_sample: Tensor, reward: Tensor) -> tuple[Tensor, Tensor]:
        """(weighted loss, weights) of per-sample losses (B,) under rewards R (B,)."""
        w = reward_weight(self.shape(reward), self.cfg.beta).to(per_sample)
        if self.cfg.normalise == "self_normalised":
            return (w * per_sample).sum() / (w.sum() + 1e-8), w
        return (w * per_sample).mean(), w

    def after_step(self, role: str, metrics: dict[str, float]) -> None:
        if not (self.cfg.centre and role == "student" and "reward" in metrics):
            return
        m = self.cfg.centre_momentum
        r = metrics["reward"]
        self.mean = r if self.mean is None else m * self.mean + (1 - m) * r

    def state_dict(self) -> dict:
        return {"mean": self.mean}

    def load_state_dict(self, state: dict) -> None:
        self.mean = state["mean"]


def load_reward_syncnet(path):
    """Our LipSyncNet (``.safetensors`` + ``.json``) or syncnet_python's ``syncnet_v2.model``,
    frozen; a file of neither architecture is one :class:`CheckpointError` naming it."""
    from pathlib import Path

    from lipforcing.evaluation.syncnet import load_syncnet, load_syncnet_v2

    path = Path(path)
    if path.suffix == ".safetensors":
        net = load_syncnet(path)
    else:
        net = load_syncnet_v2(path)
    return net.requires_grad_(False).eval()
