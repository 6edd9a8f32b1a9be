"""The smallest DiT config the tests build (2 heads, 2 layers, mel-sized audio), shared by the
model, diffusion and distillation tests; each overrides what it needs."""

from __future__ import annotations

import dataclasses

from lipforcing.config import ModelConfig

TOY = ModelConfig(
    dim=32,
    ffn_dim=64,
    num_heads=2,
    num_layers=2,
    text_dim=8,
    text_len=2,
    use_text_context=False,
    null_context_len=2,
    audio_feature_dim=6,
    audio_first_layer=0,
    audio_layers=1,
    attention="block_causal",
)


def toy_config(**overrides) -> ModelConfig:
    return dataclasses.replace(TOY, **overrides)
