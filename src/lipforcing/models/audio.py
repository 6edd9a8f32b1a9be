"""OmniAvatar-style audio conditioning: pack per-frame features, add them to hidden tokens.

Facts from OmniAvatar (``OmniAvatar/models/wan_video_dit.py``, ``audio_pack.py``), matched here
so its checkpoints load by name:

- ``audio_proj`` is an ``AudioPack`` with patch (4, 1, 1): the features of the 4 video frames
  of one latent frame are concatenated frame-major (``(t c)``, t = 4) and projected by
  ``audio_proj.proj`` (Linear 4 * 10752 -> 32), then ``audio_proj.norm_out`` (LayerNorm(32),
  affine). The first video frame's features are repeated 3 times before packing (Wan's first
  latent frame holds one video frame) - our ``LipSyncCond.audio`` already has that layout.
- ``audio_cond_projs`` is a ModuleList of ``num_layers // 2 - 1`` Linears 32 -> dim. Before
  block ``i`` for i in 2 .. num_layers // 2, projection ``i - 2`` of the packed audio is added
  to every hidden token of the matching latent frame (broadcast over the patch grid).

Here the first audio block and the count are ``ModelConfig.audio_first_layer`` and
``num_audio_layers`` (OmniAvatar's values by default).
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from lipforcing.config import ModelConfig
from lipforcing.models.blocks import per_sample


class AudioPack(nn.Module):
    """Packs ``pack`` per-video-frame feature rows into one vector per latent frame."""

    def __init__(self, feature_dim: int, pack: int, out_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.pack = pack
        self.proj = nn.Linear(pack * feature_dim, out_dim)
        self.norm_out = nn.LayerNorm(out_dim, eps=eps)

    def forward(self, audio: Tensor) -> Tensor:
        """(B, pack * F, A) -> (B, F, out_dim), normalised in float32."""
        x = rearrange(audio, "b (f t) a -> b f (t a)", t=self.pack)
        x = self.proj(x.to(self.proj.weight.dtype))
        n = self.norm_out
        return F.layer_norm(x.float(), n.normalized_shape, n.weight.float(), n.bias.float(), n.eps)


def build_audio_modules(cfg: ModelConfig) -> tuple[AudioPack, nn.ModuleList]:
    """``audio_proj`` and ``audio_cond_projs`` for ``cfg`` (OmniAvatar's shapes)."""
    pack = AudioPack(cfg.audio_feature_dim, cfg.audio_pack_frames, cfg.audio_pack_dim)
    projs = nn.ModuleList(
        nn.Linear(cfg.audio_pack_dim, cfg.dim) for _ in range(cfg.num_audio_layers)
    )
    return pack, projs


def audio_layer_index(cfg: ModelConfig, block: int) -> int | None:
    """Index into ``audio_cond_projs`` for DiT block ``block``, or None without audio there."""
    k = block - cfg.audio_first_layer
    return k if 0 <= k < cfg.num_audio_layers else None


def add_audio(x: Tensor, audio_emb: Tensor, proj: nn.Linear) -> Tensor:
    """Add ``proj(audio_emb)`` to every token of its latent frame.

    Args:
        x: hidden tokens, frame-major, (B, F * S, dim), float32 residual stream.
        audio_emb: packed audio per latent frame, (B, F, pack_dim), float32.
        proj: one of ``audio_cond_projs``.

    Returns:
        (B, F * S, dim).
    """
    b, f = audio_emb.shape[:2]
    a = per_sample(lambda e: proj(e.to(proj.weight.dtype)), audio_emb).float()  # (B, F, dim)
    return (x.view(b, f, -1, x.shape[-1]) + a[:, :, None]).view_as(x)
