"""Small stand-ins for the trajectory-analysis tests: a toy teacher, conditions, shards, codec."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from lipforcing.config import tiny
from lipforcing.data.preprocess import write_shard
from lipforcing.models import build_model
from lipforcing.models.conditioning import LipSyncCond

HW = (4, 4)  # latent grid of 32 x 32 crops


def toy_preset():
    """The tiny preset shrunk to a 2-block DiT on 32 x 32 crops (latents 16 x F x 4 x 4)."""
    p = tiny()
    model = dataclasses.replace(
        p.model, dim=32, ffn_dim=64, num_layers=2, audio_layers=1, audio_first_layer=0
    )
    codec = dataclasses.replace(p.codec, image_size=32)
    media = dataclasses.replace(p.media, crop_size=32)
    return dataclasses.replace(p, model=model, codec=codec, media=media)


def toy_teacher(seed: int = 0, preset=None):
    """A randomly initialised bidirectional teacher whose outputs depend on every input."""
    preset = preset or toy_preset()
    torch.manual_seed(seed)
    m = build_model(preset.model)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return m.eval()


def toy_cond(frames: int = 3, seed: int = 0, preset=None) -> LipSyncCond:
    preset = preset or toy_preset()
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g)

    return LipSyncCond(
        ref=r(1, 16, frames, *HW),
        mask=(r(1, 1, frames, *HW) > 0).float(),
        masked=r(1, 16, frames, *HW),
        ref_seq=r(1, 16, frames, *HW),
        audio=r(1, 4 * frames, preset.model.audio_feature_dim),
    )


class PoolCodec:
    """Stand-in codec: keep every 4th frame, 8x8 average pool, 3 -> 16 channels (zeros)."""

    def encode(self, video):
        x = F.avg_pool3d(video[:, :, ::4], (1, 8, 8))  # (B, 3, F, S/8, S/8)
        return torch.cat([x, torch.zeros_like(x[:, :1]).expand(-1, 13, -1, -1, -1)], dim=1)

    def decode(self, z):
        x = F.interpolate(z[:, :3], scale_factor=(1, 8, 8), mode="nearest")
        return x.repeat_interleave(4, dim=2)[:, :, 3:]  # 1 + 4 (F - 1) frames


def fake_shards(root, preset, clips: int = 2, frames: int = 24, seed: int = 0):
    """Shards with smooth random crops, per-frame features and 16 kHz audio."""
    rng = np.random.default_rng(seed)
    s, a = preset.media.crop_size, preset.audio.feature_dim
    for i in range(clips):
        base = rng.integers(40, 215, (1, s, s, 3))
        crops = np.clip(base + rng.integers(-30, 30, (frames, s, s, 3)), 0, 255).astype(np.uint8)
        arrays = {
            "crops": crops,
            "found": np.ones(frames, bool),
            "audio_features": rng.standard_normal((frames, a)).astype(np.float32),
            "audio": (0.1 * rng.standard_normal(frames * 640)).astype(np.float32),
            "mask": (np.arange(s)[:, None] >= s // 2).repeat(s, 1).astype(np.float32),
        }
        write_shard(root, f"clip{i}", arrays, {"frames": frames, "fps": 25.0})
    return root
