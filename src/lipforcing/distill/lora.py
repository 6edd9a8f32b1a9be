"""LoRA for the 14B student and critic (spec section 6, the release's config_sf / config_df):
rank 128, alpha 64 on every block's attention q, k, v, o (self and cross) and the FFN's two
linears (``ffn.0``, ``ffn.2``) - the release's PEFT ``target_modules`` ["q", "k", "v", "o",
"ffn.0", "ffn.2"] - while the audio projections (``audio_proj``, ``audio_cond_projs``) and the
patch embedding train in full; every other base weight is frozen.

Adapters are injected in place with peft, so parameter names keep Wan's layout
(``blocks.3.self_attn.q.base_layer.weight`` + ``lora_A.default`` / ``lora_B.default``). A
checkpoint saves the adapter alone in OmniAvatar's layout (``blocks.3.self_attn.q.lora_A.weight``,
``lora_B.weight``, plus the fully trained modules), the layout the loader merges with a base
(``lipforcing convert``); rank and alpha travel in the file header.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from lipforcing.config import LoraConfig, ModelConfig
from lipforcing.errors import CheckpointError

LORA_TARGETS = r".*blocks\.\d+\.(self_attn|cross_attn)\.(q|k|v|o)|.*blocks\.\d+\.ffn\.(0|2)"
FULL_PREFIXES = ("audio_proj.", "audio_cond_projs.", "patch_embedding.")
ADAPTER_FORMAT = "lipforcing-lora-adapter"


def add_lora(model: nn.Module, cfg: LoraConfig | None = None) -> nn.Module:
    """Inject LoRA adapters and set the trainable set; returns the same module."""
    from peft import LoraConfig as PeftLora
    from peft import inject_adapter_in_model

    cfg = cfg or LoraConfig()
    config = PeftLora(
        r=cfg.rank, lora_alpha=cfg.alpha, target_modules=LORA_TARGETS, lora_dropout=0.0
    )
    model = inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():
        p.requires_grad_(is_trainable(name))
    model.lora = cfg
    return model


def is_trainable(name: str) -> bool:
    """LoRA factors and the fully trained modules (the release's ``unfreeze_modules``)."""
    return "lora_" in name or name.startswith(FULL_PREFIXES)


def trainable_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def expected_trainable(cfg: ModelConfig, lora: LoraConfig) -> int:
    """Trainable parameters of a LoRA model, by formula.

    Per block: 8 attention linears (dim -> dim) with r (dim + dim) each, ffn.0 (dim -> ffn)
    and ffn.2 (ffn -> dim) with r (dim + ffn) each: r (18 dim + 2 ffn). In full: the patch
    embedding (in_channels * prod(patch) * dim weights + dim biases), ``audio_proj`` (Linear
    pack * A -> P and LayerNorm(P)) and ``audio_cond_projs`` (L_audio Linears P -> dim).
    """
    r, d, p = lora.rank, cfg.dim, cfg.audio_pack_dim
    per_block = r * (18 * d + 2 * cfg.ffn_dim)
    patch = cfg.in_channels * cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2] * d + d
    audio_proj = cfg.audio_pack_frames * cfg.audio_feature_dim * p + p + 2 * p
    audio_cond = cfg.num_audio_layers * (p * d + d)
    return cfg.num_layers * per_block + patch + audio_proj + audio_cond


def adapter_state(state: dict[str, Tensor], alpha: float | None = None) -> dict[str, Tensor]:
    """A LoRA model's trainable tensors in OmniAvatar's adapter layout (``lora_A.weight``,
    ``lora_B.weight``, the fully trained modules), from its full state dict; with ``alpha``,
    one ``<module>.alpha`` scalar per LoRA pair (the key a loader reads alpha from)."""
    out = {
        k.replace(".default.", "."): v.detach().to("cpu").contiguous()
        for k, v in state.items()
        if is_trainable(k)
    }
    if alpha is not None:
        for k in [k for k in out if k.endswith(".lora_A.weight")]:
            out[k[: -len(".lora_A.weight")] + ".alpha"] = torch.tensor(float(alpha))
    return out


def save_adapter(
    path: str | Path,
    state: dict[str, Tensor],
    lora: LoraConfig,
    preset,
    extra: dict | None = None,
) -> Path:
    """Write a LoRA model's adapter alone (safetensors) and its config JSON beside it;
    ``state``: the model's full state dict (gathered under FSDP2) or its trainable part."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "format": ADAPTER_FORMAT,
        "rank": str(lora.rank),
        "alpha": str(lora.alpha),
        "preset": preset.to_json(),
    }
    save_file(adapter_state(state, lora.alpha), str(path), metadata=header)
    meta = {
        "format": ADAPTER_FORMAT,
        "lora": {"rank": lora.rank, "alpha": lora.alpha},
        "preset": preset.to_dict(),
        "extra": extra or {},
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return path


def adapter_rank(state: dict[str, Tensor]) -> int | None:
    """The LoRA rank of an adapter state dict (None when it has no LoRA factors)."""
    ranks = {v.shape[0] for k, v in state.items() if ".lora_A." in k}
    if len(ranks) > 1:
        raise CheckpointError(f"adapter mixes LoRA ranks {sorted(ranks)}")
    return ranks.pop() if ranks else None


def load_adapter(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Copy an adapter (LoRA factors + fully trained modules) into a LoRA-injected model.

    Raises :class:`CheckpointError` naming the file when its rank differs from the model's or a
    key has no place in the model.
    """
    rank = adapter_rank(state)
    if rank is not None and rank != model.lora.rank:
        raise CheckpointError(
            f"{source}: LoRA rank {rank}, but the recipe trains rank {model.lora.rank}"
        )
    alphas = {float(v) for k, v in state.items() if k.endswith(".alpha")}
    if alphas - {float(model.lora.alpha)}:
        raise CheckpointError(
            f"{source}: LoRA alpha {sorted(alphas)}, but the recipe trains alpha {model.lora.alpha}"
        )
    state = {k: v for k, v in state.items() if not k.endswith(".alpha")}
    own = dict(model.named_parameters())
    mapped = {
        re.sub(r"\.lora_([AB])\.weight$", r".lora_\1.default.weight", k): v
        for k, v in state.items()
    }
    unknown = sorted(k for k in mapped if k not in own)
    if unknown:
        raise CheckpointError(
            f"{source}: {len(unknown)} adapter keys unknown to the model, e.g. {unknown[0]}"
        )
    with torch.no_grad():
        for k, v in mapped.items():
            if own[k].shape != v.shape:
                need = tuple(own[k].shape)
                raise CheckpointError(f"{source}: {k} has shape {tuple(v.shape)}, need {need}")
            own[k].copy_(v)
