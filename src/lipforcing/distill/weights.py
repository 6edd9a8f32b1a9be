"""Where each model of a stage comes from: teacher, critic and student from their own files.

Teacher, fake-score critic and student are each loaded from their own weights and scale (the
paper's 14B OmniAvatar-LS teacher with a 1.3B student and a 1.3B critic), through the one
weights loader (:func:`lipforcing.models.weights.load_model`: our checkpoints, the released
layouts, Wan shards, diffusers folders, distributed checkpoints, adapters folded in):

- ``Weights.base`` names the model as the loader does (a :class:`WeightsSpec`: a base and
  adapters folded into it, e.g. Wan 2.1 14B + the OmniAvatar-LS adapter for the teacher);
- ``Weights.adapter`` is a LoRA adapter the trainee's LoRA *starts from*, kept unmerged and
  trained (the release's ``merge_lora=False`` student and critic), e.g. a Stage-1 adapter, or
  a released adapter (OmniAvatar-LS): laid over the base as the loader lays any adapter, its
  plain tensors (audio modules, the wider patch embedding, trained modules) are loaded and its
  LoRA pairs start the LoRA, the base's own weights untouched (:func:`start_lora`);
- a file written by a LoRA stage (``distill.lora.save_adapter``) names its base in its JSON
  (:func:`base_record`: the base, its folded adapters, and the released adapter the LoRA started
  from), so it can be given alone: rebuilt from it, the trainee is the one the stage trained,
  bit for bit.

Frozen models (teacher, codec, SyncNet) are put in eval mode without gradients and are never
wrapped for training. The width and input checks run before any step (one message).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lipforcing.config import LoraConfig, PresetConfig
from lipforcing.distill.lora import ADAPTER_FORMAT, add_lora
from lipforcing.errors import CheckpointError
from lipforcing.models.dit import LipSyncDiT
from lipforcing.models.weights import LORA_ALPHA, WeightsSpec, lora_factors
from lipforcing.models.weights import load_model as load_weights_spec


@dataclass(frozen=True)
class Weights:
    """A model's weights: what the loader builds, and optionally an adapter to train from."""

    base: WeightsSpec
    adapter: Path | None = None

    @property
    def path(self) -> Path:
        return self.base.path

    @classmethod
    def of(
        cls, path: str | Path | WeightsSpec | Weights, adapter: str | Path | None = None
    ) -> Weights:
        """Resolve a LoRA stage's output given as ``path`` to (its base, itself)."""
        if isinstance(path, Weights):
            return path
        spec = WeightsSpec.of(path)
        if not spec.path.exists():
            raise CheckpointError(f"no weights at {spec.path}")
        if adapter is None and is_adapter(spec.path):
            return cls(adapter_base(spec.path), spec.path)
        return cls(spec, None if adapter is None else Path(adapter))


def from_cli(path: str, adapters: list[str], lora: LoraConfig | None) -> Weights:
    """``--X PATH [--X-adapter A ...]``: adapters fold into the base, except that a model
    trained with LoRA starts its LoRA from the last one (the release's merge_lora=False)."""
    if lora is not None and adapters:
        return Weights(WeightsSpec.of(path, adapters[:-1]), Path(adapters[-1]))
    return Weights.of(WeightsSpec.of(path, adapters))


def is_adapter(path: Path) -> bool:
    side = path.with_suffix(".json")
    if not (path.is_file() and side.is_file()):
        return False
    try:
        return json.loads(side.read_text()).get("format") == ADAPTER_FORMAT
    except ValueError:
        return False


def base_record(weights: Weights) -> dict:
    """What a LoRA stage's adapter applies to, for its JSON (read back by :func:`adapter_base`):
    the base, its folded adapters, and a released adapter the LoRA started from (its plain
    tensors are part of the model the stage trained; its pairs, and every trained module, are
    replaced by the stage's own). An adapter a LoRA stage wrote is not recorded: it holds the
    trainable set only, which the next stage's adapter replaces key for key."""
    adapters = list(weights.base.adapters)
    if weights.adapter is not None and not is_adapter(weights.adapter):
        adapters.append(weights.adapter)
    return {
        "base": str(weights.base.path.resolve()),
        "base_adapters": [str(Path(a).resolve()) for a in adapters],
    }


def adapter_base(path: Path) -> WeightsSpec:
    """The weights a LoRA adapter was trained on (recorded in its JSON)."""
    extra = json.loads(path.with_suffix(".json").read_text()).get("extra", {})
    base, folded = extra.get("base"), extra.get("base_adapters", [])
    missing = [p for p in [base, *folded] if not p or not Path(p).exists()]
    if missing:
        raise CheckpointError(
            f"{path} is a LoRA adapter whose base weights ({missing[0]}) are missing; "
            f"pass the base weights explicitly"
        )
    return WeightsSpec.of(base, folded)


def load_model(
    weights: Weights,
    attention: str,
    lora: LoraConfig | None = None,
    device: torch.device | str = "cpu",
) -> tuple[LipSyncDiT, PresetConfig]:
    """The trainee of ``weights`` with ``attention`` (fp32 master weights), LoRA added when the
    recipe trains one and started from ``weights.adapter`` when given (:func:`start_lora`)."""
    if weights.adapter is None:
        loaded = load_weights_spec(weights.base, attention=attention, device=device)
        if lora is not None:
            add_lora(loaded.model, lora)
            loaded.model.to(device)
        return loaded.model, loaded.preset
    if lora is None:
        raise CheckpointError(
            f"{weights.adapter}: a LoRA adapter, but the recipe trains this model in full "
            f"(fold it into the base instead: give it as an adapter of the weights)"
        )
    return start_lora(weights, attention, lora, device)


def start_lora(
    weights: Weights, attention: str, lora: LoraConfig, device: torch.device | str = "cpu"
) -> tuple[LipSyncDiT, PresetConfig]:
    """A LoRA trainee started from an adapter, unmerged (the release's ``merge_lora=False``).

    One loader plan lays the base, its folded adapters and ``weights.adapter`` over each other
    (a later source replaces an earlier one key by key): the adapter's plain tensors (a released
    adapter's audio modules and wider patch embedding, a stage's trained modules) are loaded,
    the base's own weights stay exactly as stored, earlier pairs that the adapter replaces are
    dropped, and the adapter's LoRA pairs become the trainable LoRA's A and B. A released
    adapter (OmniAvatar-LS) and an adapter a LoRA stage wrote start the same way.
    """
    base = weights.base
    spec = WeightsSpec(base.path, (*base.adapters, weights.adapter), base.family, base.lora_alpha)
    loaded = load_weights_spec(spec, attention=attention, device=device, keep_lora=True)
    model = add_lora(loaded.model, lora)
    model.to(device)
    own = dict(model.named_parameters())
    default_alpha = LORA_ALPHA if base.lora_alpha is None else base.lora_alpha
    with torch.no_grad():
        for module, pair in loaded.unmerged.items():
            a, b, alpha = lora_factors(pair, default_alpha, device)
            if a.shape[0] != lora.rank:
                raise CheckpointError(
                    f"{weights.adapter}: LoRA rank {a.shape[0]}, but the recipe trains rank "
                    f"{lora.rank} ({module})"
                )
            if alpha != lora.alpha:
                raise CheckpointError(
                    f"{weights.adapter}: LoRA alpha {alpha}, but the recipe trains alpha "
                    f"{lora.alpha} ({module})"
                )
            if f"{module}.lora_A.default.weight" not in own:
                raise CheckpointError(
                    f"{weights.adapter}: a LoRA pair on {module}, which the recipe does not "
                    f"train with LoRA"
                )
            own[f"{module}.lora_A.default.weight"].copy_(a)
            own[f"{module}.lora_B.default.weight"].copy_(b)
    return model, loaded.preset


def load_frozen(
    weights: Weights,
    attention: str = "bidirectional",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[nn.Module, PresetConfig]:
    """A frozen model (teacher): adapters folded in, no grads, eval mode, ``dtype``."""
    if weights.adapter is not None:
        raise CheckpointError(
            f"{weights.adapter}: a frozen teacher takes its adapters folded in (as adapters "
            f"of its weights), not as a trainable LoRA"
        )
    loaded = load_weights_spec(weights.base, attention=attention, device=device, dtype=dtype)
    return loaded.model.requires_grad_(False).eval(), loaded.preset


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
