"""Small random DiT configs and conditions for the model tests."""

from __future__ import annotations

import torch

from lipforcing.config import ModelConfig
from lipforcing.models import build_model
from lipforcing.models.conditioning import LipSyncCond
from toy_models import toy_config


def small_config(**overrides) -> ModelConfig:
    """A 2-head, 4-layer DiT (audio in blocks 1-2) that runs in milliseconds on the CPU."""
    base = dict(
        dim=48,
        ffn_dim=96,
        num_layers=4,
        text_dim=16,
        text_len=4,
        null_context_len=3,
        audio_feature_dim=8,
        audio_first_layer=1,
        audio_layers=2,
    )
    return toy_config(**{**base, **overrides})


def randomized(cfg: ModelConfig, seed: int = 0) -> torch.nn.Module:
    """A model whose every parameter is random (no zero gates or head), so outputs differ."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model.eval()


def random_cond(cfg: ModelConfig, frames: int, hw=(4, 4), batch: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = cfg.latent_channels

    def r(*shape):
        return torch.randn(*shape, generator=g)

    ctx = r(batch, cfg.text_len, cfg.text_dim) if cfg.use_text_context else None
    return LipSyncCond(
        ref=r(batch, c, frames, *hw),
        mask=(r(batch, 1, frames, *hw) > 0).float(),
        masked=r(batch, c, frames, *hw),
        ref_seq=r(batch, c, frames, *hw),
        audio=r(batch, cfg.audio_pack_frames * frames, cfg.audio_feature_dim),
        context=ctx,
    )
