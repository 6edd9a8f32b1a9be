"""LoRA for the 14B student (spec section 6): rank 128, alpha 64 on attention q, k, v, o and the
FFN's two linears (``ffn.0``, ``ffn.2``) of every block; the audio projections
(``audio_proj``, ``audio_cond_projs``) and the patch embedding are trained in full; every other
base weight is frozen. Adapters are injected in place with peft, so parameter names keep Wan's
layout (``blocks.3.self_attn.q.base_layer.weight`` + ``lora_A``/``lora_B``), the layout the
checkpoint loader merges.
"""

from __future__ import annotations

from torch import nn

LORA_TARGETS = r".*blocks\.\d+\.(self_attn|cross_attn)\.(q|k|v|o)|.*blocks\.\d+\.ffn\.(0|2)"
FULL_PREFIXES = ("audio_proj.", "audio_cond_projs.", "patch_embedding.")


def add_lora(model: nn.Module, rank: int = 128, alpha: float = 64.0) -> nn.Module:
    """Inject LoRA adapters and set the trainable set; returns the same module."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=LORA_TARGETS, lora_dropout=0.0)
    model = inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name or name.startswith(FULL_PREFIXES))
    return model


def trainable_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]
