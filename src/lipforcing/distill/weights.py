"""Where each model of a stage comes from: teacher, critic and student from their own files.

Teacher, fake-score critic and student are each loaded from their own weights and scale (the
paper's 14B OmniAvatar-LS teacher with a 1.3B student and a 1.3B critic), through the one
weights loader (:func:`lipforcing.models.weights.load_model`: our checkpoints, the released
layouts, Wan shards, diffusers folders, distributed checkpoints, adapters folded in):

- ``Weights.base`` names the model as the loader does (a :class:`WeightsSpec`: a base and
  adapters folded into it, e.g. Wan 2.1 14B + the OmniAvatar-LS adapter for the teacher);
- ``Weights.adapter`` is a LoRA adapter the trainee's LoRA *starts from*, kept unmerged and
  trained (the release's ``merge_lora=False`` student and critic), e.g. a Stage-1 adapter, or
  a released adapter (OmniAvatar-LS): its plain tensors (audio modules, the wider patch
  embedding) join the base and its LoRA pairs start the LoRA (:func:`load_with_release_adapter`);
- a file written by a LoRA stage (``distill.lora.save_adapter``) names its base in its JSON, so
  it can be given alone.

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
from lipforcing.distill.lora import ADAPTER_FORMAT, add_lora, load_adapter
from lipforcing.errors import CheckpointError
from lipforcing.models.checkpoints import read_state_dict
from lipforcing.models.dit import LipSyncDiT
from lipforcing.models.weights import WeightsSpec
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
    if lora is not None and weights.adapter is not None and not is_adapter(weights.adapter):
        return load_with_release_adapter(weights, attention, lora, device)
    return _load_model(weights, attention, lora, device)


def load_with_release_adapter(
    weights: Weights, attention: str, lora: LoraConfig, device: torch.device | str = "cpu"
) -> tuple[LipSyncDiT, PresetConfig]:
    """A LoRA trainee started from a released adapter (OmniAvatar-LS), as the release does
    (``merge_lora=False``): the base with the adapter's plain tensors (audio modules, the wider
    patch embedding), and the trainable LoRA starting from the adapter's pairs, unmerged.

    The loader builds the base with the adapter folded in (W + (alpha / r) B A: its architecture
    needs the adapter's tensors); each pair is then taken back out of its weight (W to fp32
    rounding) and becomes the LoRA's A and B.
    """
    from lipforcing.models.sources import open_source
    from lipforcing.models.weights import LORA_ALPHA, Plan, add_source

    base = weights.base
    spec = WeightsSpec(base.path, (*base.adapters, weights.adapter), base.family, base.lora_alpha)
    loaded = load_weights_spec(spec, attention=attention, device=device)
    model, preset = loaded.model, loaded.preset
    add_lora(model, lora)
    model.to(device)
    plan = Plan()
    add_source(plan, open_source(weights.adapter))
    own = dict(model.named_parameters())
    default_alpha = LORA_ALPHA if base.lora_alpha is None else base.lora_alpha
    with torch.no_grad():
        for module, pair in plan.loras.items():
            a = pair.a.source.get(pair.a.key).to(device).float()
            b = pair.b.source.get(pair.b.key).to(device).float()
            alpha = default_alpha
            if pair.alpha is not None:
                alpha = float(pair.alpha.source.get(pair.alpha.key).float().reshape(-1)[0])
            if a.shape[0] != lora.rank or alpha != lora.alpha:
                raise CheckpointError(
                    f"{weights.adapter}: LoRA rank {a.shape[0]} / alpha {alpha} on {module}, but "
                    f"the recipe trains rank {lora.rank} / alpha {lora.alpha}"
                )
            name = f"{module}.base_layer.weight"
            if name not in own:
                raise CheckpointError(
                    f"{weights.adapter}: a LoRA pair on {module}, which the recipe does not "
                    f"train with LoRA"
                )
            own[name].sub_((alpha / lora.rank) * (b @ a))
            own[f"{module}.lora_A.default.weight"].copy_(a)
            own[f"{module}.lora_B.default.weight"].copy_(b)
    return model, preset


def _load_model(
    weights: Weights,
    attention: str,
    lora: LoraConfig | None = None,
    device: torch.device | str = "cpu",
) -> tuple[LipSyncDiT, PresetConfig]:
    """The trainee of ``weights`` with ``attention`` (fp32 master weights), LoRA added and
    started from ``weights.adapter`` when given."""
    loaded = load_weights_spec(weights.base, attention=attention, device=device)
    model, preset = loaded.model, loaded.preset
    if lora is not None:
        add_lora(model, lora)
        model.to(device)
    if weights.adapter is not None:
        if lora is None:
            raise CheckpointError(
                f"{weights.adapter}: a LoRA adapter, but the recipe trains this model in full "
                f"(fold it into the base instead: give it as an adapter of the weights)"
            )
        load_adapter(model, read_state_dict(weights.adapter), str(weights.adapter))
    return model, preset


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
