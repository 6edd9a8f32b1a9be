"""The released weight layouts, written out by hand from the official code (names, shapes, dtypes).

These tables are the independent side of the loader's tests: they come from the releases, not
from our model, so a key our loader maps wrongly fails to load.

- Wan 2.1 T2V DiT (``wan/modules/model.py``): ``patch_embedding`` (dim, 16, 1, 2, 2),
  ``text_embedding.{0,2}``, ``time_embedding.{0,2}``, ``time_projection.1`` (6 dim, dim),
  per block ``self_attn`` / ``cross_attn`` ``{q,k,v,o}`` + ``norm_q`` / ``norm_k`` (dim,),
  ``norm3`` (affine), ``ffn.{0,2}``, ``modulation`` (1, 6, dim); ``head.head``,
  ``head.modulation`` (1, 2, dim). Stored float32; 1.3B as one ``diffusion_pytorch_model
  .safetensors``, 14B as 6 shards ``diffusion_pytorch_model-0000k-of-00006.safetensors`` + index.
- OmniAvatar audio modules (``OmniAvatar/models/wan_video_dit.py``): ``audio_proj.proj``
  (32, 4 x 10752), ``audio_proj.norm_out`` (32,), ``audio_cond_projs.K`` (dim, 32) for
  K < num_layers // 2 - 1. Its adapter (``pytorch_model.pt``) holds LoRA pairs
  ``<module>.lora_A.weight`` (rank, in) / ``lora_B.weight`` (out, rank) on q, k, v, o, ffn.0,
  ffn.2 (rank 128, alpha 64), the audio modules and the patch embedding (33 or 65 channels).
- Lip Forcing release (``scripts/export_merged_checkpoint.py``): ``lipforcing_14b.pth`` is a
  flat ``torch.save`` dict of the causal wrapper's ``_core`` state dict, LoRA folded, bf16,
  65 input channels; its trainer saves ``{"model": {"net": {"_core." + name: tensor}}, ...}``
  (Stage-2 delta: LoRA ``lora_A.default.weight`` + audio modules + patch embedding) and, under
  FSDP, a ``torch.distributed.checkpoint`` folder ``<iteration>.net_model/``.
- Wan's umT5-XXL encoder ``models_t5_umt5-xxl-enc-bf16.pth`` (``wan/modules/t5.py``):
  ``token_embedding``, per block ``norm1``, ``attn.{q,k,v,o}``, ``pos_embedding.embedding``
  (32 buckets x heads, one per block), ``norm2``, ``ffn.gate.0`` / ``ffn.fc1`` / ``ffn.fc2``
  (gated tanh-GELU), and ``norm``; tokenizer in ``google/umt5-xxl/``.
"""

from __future__ import annotations

import math

from lipforcing.config import ModelConfig

UMT5_TO_WAN = {  # transformers UMT5EncoderModel block names -> Wan's umT5 (wan/modules/t5.py)
    "layer.0.layer_norm.weight": "norm1.weight",
    "layer.0.SelfAttention.q.weight": "attn.q.weight",
    "layer.0.SelfAttention.k.weight": "attn.k.weight",
    "layer.0.SelfAttention.v.weight": "attn.v.weight",
    "layer.0.SelfAttention.o.weight": "attn.o.weight",
    "layer.0.SelfAttention.relative_attention_bias.weight": "pos_embedding.embedding.weight",
    "layer.1.layer_norm.weight": "norm2.weight",
    "layer.1.DenseReluDense.wi_0.weight": "ffn.gate.0.weight",
    "layer.1.DenseReluDense.wi_1.weight": "ffn.fc1.weight",
    "layer.1.DenseReluDense.wo.weight": "ffn.fc2.weight",
}
LORA_TARGETS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o",
                "ffn.0", "ffn.2")  # fmt: skip


def wan_t2v_shapes(cfg: ModelConfig, in_dim: int = 16) -> dict[str, tuple[int, ...]]:
    """Wan 2.1 T2V parameter names and shapes for ``cfg``'s width and depth."""
    dim, ffn, patch = cfg.dim, cfg.ffn_dim, cfg.patch_size
    out = cfg.latent_channels * math.prod(patch)
    table = {
        "patch_embedding.weight": (dim, in_dim, *patch),
        "patch_embedding.bias": (dim,),
        "text_embedding.0.weight": (dim, cfg.text_dim),
        "text_embedding.0.bias": (dim,),
        "text_embedding.2.weight": (dim, dim),
        "text_embedding.2.bias": (dim,),
        "time_embedding.0.weight": (dim, cfg.freq_dim),
        "time_embedding.0.bias": (dim,),
        "time_embedding.2.weight": (dim, dim),
        "time_embedding.2.bias": (dim,),
        "time_projection.1.weight": (6 * dim, dim),
        "time_projection.1.bias": (6 * dim,),
        "head.head.weight": (out, dim),
        "head.head.bias": (out,),
        "head.modulation": (1, 2, dim),
    }
    for i in range(cfg.num_layers):
        b = f"blocks.{i}"
        for attn in ("self_attn", "cross_attn"):
            for lin in "qkvo":
                table[f"{b}.{attn}.{lin}.weight"] = (dim, dim)
                table[f"{b}.{attn}.{lin}.bias"] = (dim,)
            table[f"{b}.{attn}.norm_q.weight"] = (dim,)
            table[f"{b}.{attn}.norm_k.weight"] = (dim,)
        table[f"{b}.norm3.weight"] = (dim,)
        table[f"{b}.norm3.bias"] = (dim,)
        table[f"{b}.ffn.0.weight"] = (ffn, dim)
        table[f"{b}.ffn.0.bias"] = (ffn,)
        table[f"{b}.ffn.2.weight"] = (dim, ffn)
        table[f"{b}.ffn.2.bias"] = (dim,)
        table[f"{b}.modulation"] = (1, 6, dim)
    return table


def omniavatar_audio_shapes(cfg: ModelConfig, hidden: int = 32) -> dict[str, tuple[int, ...]]:
    """OmniAvatar's ``AudioPack`` (4, 1, 1) and ``num_layers // 2 - 1`` projections."""
    table = {
        "audio_proj.proj.weight": (hidden, 4 * cfg.audio_feature_dim),
        "audio_proj.proj.bias": (hidden,),
        "audio_proj.norm_out.weight": (hidden,),
        "audio_proj.norm_out.bias": (hidden,),
    }
    for k in range(cfg.num_layers // 2 - 1):
        table[f"audio_cond_projs.{k}.weight"] = (cfg.dim, hidden)
        table[f"audio_cond_projs.{k}.bias"] = (cfg.dim,)
    return table


def lora_shapes(
    cfg: ModelConfig, rank: int, naming: str = "omniavatar"
) -> dict[str, tuple[int, ...]]:
    """LoRA pairs on every block's attention and FFN Linears.

    ``naming``: ``omniavatar`` (``lora_A.weight``), ``peft`` (``lora_A.default.weight``) or
    ``kohya`` (``lora_down.weight`` / ``lora_up.weight``).
    """
    a_name, b_name = {
        "omniavatar": ("lora_A.weight", "lora_B.weight"),
        "peft": ("lora_A.default.weight", "lora_B.default.weight"),
        "kohya": ("lora_down.weight", "lora_up.weight"),
    }[naming]
    table = {}
    for i in range(cfg.num_layers):
        for target in LORA_TARGETS:
            out_dim, in_dim = _linear_shape(cfg, target)
            table[f"blocks.{i}.{target}.{a_name}"] = (rank, in_dim)
            table[f"blocks.{i}.{target}.{b_name}"] = (out_dim, rank)
    return table


def _linear_shape(cfg: ModelConfig, target: str) -> tuple[int, int]:
    if target == "ffn.0":
        return cfg.ffn_dim, cfg.dim
    if target == "ffn.2":
        return cfg.dim, cfg.ffn_dim
    return cfg.dim, cfg.dim


__all__ = [
    "LORA_TARGETS",
    "UMT5_TO_WAN",
    "lora_shapes",
    "omniavatar_audio_shapes",
    "wan_t2v_shapes",
]
