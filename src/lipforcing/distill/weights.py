"""Where each model of a stage comes from: teacher, critic and student from their own files.

Teacher, fake-score critic and student are each loaded from their own weights and scale (the
paper's 14B OmniAvatar-LS teacher with a 1.3B student and a 1.3B critic), on one code path:

- a full checkpoint (ours: ``.safetensors`` + ``.json``) rebuilt with the attention the role
  needs (bidirectional teacher / critic, block-causal student);
- a LoRA adapter written by a LoRA stage (``distill.lora.save_adapter``): its base is the full
  checkpoint named in its JSON, the adapter's factors become the trainable LoRA.

Frozen models (teacher, codec, SyncNet) are put in eval mode without gradients and are never
wrapped for training. The width checks run before any step (one message naming both files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from lipforcing.config import LoraConfig, PresetConfig
from lipforcing.distill.lora import ADAPTER_FORMAT, add_lora, load_adapter
from lipforcing.errors import CheckpointError
from lipforcing.models.checkpoints import load_weights, read_preset, read_state_dict
from lipforcing.models.dit import LipSyncDiT, build_model


@dataclass(frozen=True)
class Weights:
    """A model's weights: a full checkpoint, optionally with an adapter to train from."""

    path: Path
    adapter: Path | None = None

    @classmethod
    def of(cls, path: str | Path, adapter: str | Path | None = None) -> Weights:
        """Resolve an adapter file given as ``path`` to (its base, itself)."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"no checkpoint at {path}")
        if adapter is None and is_adapter(path):
            return cls(adapter_base(path), path)
        return cls(path, None if adapter is None else Path(adapter))


def is_adapter(path: Path) -> bool:
    side = path.with_suffix(".json")
    if not side.is_file():
        return False
    try:
        return json.loads(side.read_text()).get("format") == ADAPTER_FORMAT
    except ValueError:
        return False


def adapter_base(path: Path) -> Path:
    """The full checkpoint a LoRA adapter was trained on (recorded in its JSON)."""
    base = json.loads(path.with_suffix(".json").read_text()).get("extra", {}).get("base")
    if not base or not Path(base).is_file():
        raise CheckpointError(
            f"{path} is a LoRA adapter whose base checkpoint ({base}) is missing; "
            f"pass the base weights explicitly"
        )
    return Path(base)


def load_model(
    weights: Weights, attention: str, lora: LoraConfig | None = None
) -> tuple[LipSyncDiT, PresetConfig]:
    """Build the model of ``weights.path`` with ``attention``, load it, add LoRA / adapter."""
    preset = read_preset(weights.path).with_attention(attention)
    model = build_model(preset.model)
    load_weights(model, read_state_dict(weights.path), source="native", strict=True)
    if lora is not None:
        add_lora(model, lora)
    if weights.adapter is not None:
        if lora is None:
            raise CheckpointError(
                f"{weights.adapter}: a LoRA adapter, but the recipe trains this model in full "
                f"(merge it first with `lipforcing convert`)"
            )
        load_adapter(model, read_state_dict(weights.adapter), str(weights.adapter))
    return model, preset


def load_frozen(
    weights: Weights, attention: str = "bidirectional"
) -> tuple[nn.Module, PresetConfig]:
    """A frozen model (teacher): no grads, eval mode; an adapter is merged into it first."""
    if weights.adapter is not None:
        raise CheckpointError(
            f"{weights.adapter}: merge this adapter into its base with `lipforcing convert` to use "
            f"it as a frozen teacher"
        )
    model, preset = load_model(weights, attention)
    return model.requires_grad_(False).eval(), preset


def check_width(
    role: str, weights: Weights, preset: PresetConfig, target: str, want: PresetConfig
) -> None:
    """Refuse a model whose width is not the one its role needs (before any step)."""
    if preset.model.dim != want.model.dim:
        raise CheckpointError(
            f"the {role} weights {weights.path} have width {preset.model.dim}, but the recipe "
            f"puts the {role} at the {target}'s scale (width {want.model.dim})"
        )


def check_inputs(role: str, weights: Weights, preset: PresetConfig, student: PresetConfig) -> None:
    """Every model of a stage reads the same latents, audio features and text context."""
    for name in ("latent_channels", "audio_feature_dim", "text_dim"):
        have, need = getattr(preset.model, name), getattr(student.model, name)
        if have != need:
            raise CheckpointError(
                f"the {role} weights {weights.path} take {name} {have}, the student {need}"
            )
