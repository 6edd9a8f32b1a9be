"""Checkpoints: our safetensors + config format, and loaders for Wan / diffusers / OmniAvatar.

Our format: ``<name>.safetensors`` with the model's state dict under its own (Wan 2.1) names and
``<name>.json`` beside it holding ``{"preset": PresetConfig.to_dict(), "extra": ...}``; the
preset JSON is also stored in the safetensors header, so a lone weights file still loads.
:func:`load_checkpoint` rebuilds the model from the stored preset.

Foreign weights (:func:`load_pretrained`) are mapped onto our names:

- Wan 2.1 original (``wan/modules/model.py``): identical names; a wrapper prefix (``model.``,
  ``module.``, ``_core.`` ...) is read off the ``patch_embedding.weight`` key and stripped.
- diffusers ``WanTransformer3DModel``: ``condition_embedder.*``, ``attn1``/``attn2`` with
  ``to_q/to_k/to_v/to_out.0``, ``ffn.net.0.proj``/``ffn.net.2``, diffusers' affine ``norm2``
  (= Wan's ``norm3``), ``scale_shift_table``, ``proj_out`` (table :data:`DIFFUSERS_TO_WAN`).
- OmniAvatar: Wan names plus ``audio_proj.*`` / ``audio_cond_projs.*``; its 14B release is a
  PEFT LoRA (``*.lora_A.default.weight`` / ``*.lora_B.default.weight``) merged here as
  W += (alpha / rank) B A. A patch embedding with fewer input channels (Wan's 16, OmniAvatar's
  33 = noisy | image latent | mask) fills our first channels - the same order as
  ``LipSyncCond.model_inputs`` - and the new channels start at zero.
- Official Lip Forcing release (code: github.com/T-64/LipForcing, FastGen-based): its trainer
  saves ``torch.save({"model": {name: state_dict}, "iteration": ...})``; we take ``"net"`` (the
  student). Its wrappers hold the OmniAvatar ``WanModel`` at ``model.`` (bidirectional) or
  ``_core.`` (causal), with PEFT LoRA either merged or kept as ``*.base_layer.weight`` +
  ``lora_A/B``; in-channels 65 = noisy | ref | mask | masked video | ref sequence, our order.
  ASSUMPTION: no released weight file was available to check, so the layout is inferred from
  that code (Wan / OmniAvatar names under a wrapper prefix).

Every load reports missing / unexpected / reshaped keys and refuses a mismatched checkpoint
with a one-line :class:`CheckpointError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lipforcing.config import PresetConfig
from lipforcing.errors import CheckpointError
from lipforcing.models.dit import LipSyncDiT, build_model, is_lipsync_param

DIFFUSERS_TO_WAN = [  # (diffusers regex, Wan replacement), applied in order
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"\.attn1\.", ".self_attn."),
    (r"\.attn2\.", ".cross_attn."),
    (r"\.to_q\.", ".q."),
    (r"\.to_k\.", ".k."),
    (r"\.to_v\.", ".v."),
    (r"\.to_out\.0\.", ".o."),
    (r"\.ffn\.net\.0\.proj\.", ".ffn.0."),
    (r"\.ffn\.net\.2\.", ".ffn.2."),
    (r"^(blocks\.\d+)\.norm2\.", r"\1.norm3."),
    (r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"^scale_shift_table$", "head.modulation"),
]
LORA_ALPHA = 64.0  # Lip Forcing / OmniAvatar 14B LoRA: rank 128, alpha 64


@dataclass
class LoadReport:
    """What a load did: keys the model lacked values for, extra keys, reshaped tensors."""

    source: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    reshaped: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # outside the DiT's prefix, not loaded

    def summary(self) -> str:
        return (
            f"{self.source}: {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.reshaped)} reshaped ({', '.join(self.reshaped) or '-'}), "
            f"{len(self.ignored)} ignored"
        )


# ----------------------------------------------------------------------------- files


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:200]


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` or ``.pth/.pt`` file (``torch.load(weights_only=True)``).

    Nested training checkpoints (``{"model": {"net": ...}}``, ``{"state_dict": ...}``) are
    unwrapped to the student's state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if path.suffix in {".pth", ".pt", ".bin"}:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
            return _unwrap(obj, path)
    except CheckpointError:
        raise
    except Exception as e:  # corrupt header, truncated file, pickle with code, ...
        raise CheckpointError(f"{path} is not a readable checkpoint ({_one_line(e)})") from None
    raise CheckpointError(f"{path}: unknown checkpoint type (use .safetensors, .pth or .pt)")


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    for key in ("model", "net", "state_dict", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no flat state dict of tensors")
    return obj


def save_checkpoint(
    path: str | Path, model: nn.Module, preset: PresetConfig, extra: dict | None = None
) -> Path:
    """Write ``path`` (.safetensors) and its config ``path.with_suffix('.json')``."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: checkpoints are written as .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "lipforcing-dit", "preset": preset.to_json()}
    save_file(tensors, str(path), metadata=meta)
    config = {"format": "lipforcing-dit", "preset": preset.to_dict(), "extra": extra or {}}
    path.with_suffix(".json").write_text(json.dumps(config, indent=2, sort_keys=True))
    return path


def read_preset(path: str | Path) -> PresetConfig:
    """The preset stored beside ``path`` (JSON) or, failing that, in its safetensors header."""
    path = Path(path)
    side = path.with_suffix(".json")
    try:
        if side.is_file():
            return PresetConfig.from_dict(json.loads(side.read_text())["preset"])
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if "preset" in meta:
            return PresetConfig.from_dict(json.loads(meta["preset"]))
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable config ({_one_line(e)})") from None
    raise CheckpointError(f"{path}: no config ({side.name} beside it, or in the file header)")


def load_checkpoint(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[LipSyncDiT, PresetConfig]:
    """Rebuild the model from the stored preset and load its weights strictly."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    state = read_state_dict(path)
    preset = read_preset(path)
    model = build_model(preset.model, device=device)
    load_weights(model, state, source="native", strict=True)
    return model, preset


def student_from_teacher(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[LipSyncDiT, PresetConfig]:
    """A block-causal student initialised from a bidirectional teacher checkpoint."""
    preset = read_preset(path).with_attention("block_causal")
    model = build_model(preset.model, device=device)
    load_weights(model, read_state_dict(path), source="native", strict=True)
    return model, preset


def load_pretrained(model: LipSyncDiT, path: str | Path) -> LoadReport:
    """Load Wan 2.1 / diffusers / OmniAvatar / official Lip Forcing weights into ``model``.

    Lip-sync parameters absent from the file (audio modules, null context) keep their init.
    """
    return load_weights(model, read_state_dict(path), source="auto", strict=False)


# ----------------------------------------------------------------------------- mapping


def detect_source(state: dict[str, Tensor]) -> str:
    """``"diffusers"`` or ``"wan"`` (Wan names: original, OmniAvatar, Lip Forcing, ours)."""
    if any(k.startswith("condition_embedder.") or ".attn1." in k for k in state):
        return "diffusers"
    return "wan"


def strip_prefix(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Remove the wrapper prefix of the DiT's keys (``model.``, ``_core.``, ``module.`` ...).

    The prefix is read off the patch-embedding key; keys outside it (e.g. a training wrapper's
    ``logvar`` head) are returned as ignored.
    """
    anchor = [k for k in state if k.endswith("patch_embedding.weight")]
    if len(anchor) != 1:
        return state, []
    prefix = anchor[0][: -len("patch_embedding.weight")]
    if prefix and not prefix.endswith("."):
        return state, []
    kept = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return kept, sorted(k for k in state if not k.startswith(prefix))


def convert_diffusers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """diffusers ``WanTransformer3DModel`` names -> Wan 2.1 names."""
    out = {}
    for key, value in state.items():
        for pattern, repl in DIFFUSERS_TO_WAN:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def merge_lora(state: dict[str, Tensor], alpha: float = LORA_ALPHA) -> dict[str, Tensor]:
    """Fold PEFT LoRA pairs into their base weights: W += (alpha / rank) B A."""
    state = {k.replace(".base_layer.", "."): v for k, v in state.items()}  # PEFT-wrapped
    pairs = [k for k in state if ".lora_A." in k]
    if not pairs:
        return state
    out = {k: v for k, v in state.items() if ".lora_" not in k}
    for a_key in pairs:
        base = re.sub(r"\.lora_A(\.[^.]+)?\.weight$", ".weight", a_key)
        b_key = a_key.replace(".lora_A.", ".lora_B.")
        if base not in out or b_key not in state:
            raise CheckpointError(f"LoRA {a_key} has no base weight or no lora_B partner")
        a, b = state[a_key].float(), state[b_key].float()
        out[base] = (out[base].float() + (alpha / a.shape[0]) * b @ a).to(out[base].dtype)
    return out


def load_weights(
    model: nn.Module, state: dict[str, Tensor], *, source: str = "auto", strict: bool = True
) -> LoadReport:
    """Map ``state`` to our names and copy it into ``model``.

    Args:
        source: ``"native"`` (our names), ``"diffusers"``, ``"wan"`` or ``"auto"``.
        strict: every parameter must come from ``state``; otherwise lip-sync parameters may be
            missing (a base Wan checkpoint). Unexpected keys and shape mismatches always fail.

    Returns:
        A :class:`LoadReport`.
    """
    state, ignored = strip_prefix(dict(state))
    if source == "auto":
        source = detect_source(state)
    if source == "diffusers":
        state = convert_diffusers(state)
    state = merge_lora(state)
    report = LoadReport(source, ignored=ignored)
    own = model.state_dict()
    report.unexpected = sorted(set(state) - set(own))
    report.missing = sorted(set(own) - set(state))
    allowed = [] if strict else [k for k in report.missing if is_lipsync_param(k)]
    if report.unexpected or len(report.missing) != len(allowed):
        bad = [k for k in report.missing if k not in allowed]
        raise CheckpointError(
            f"checkpoint does not match the model ({source}): {len(bad)} missing "
            f"{bad[:3]}, {len(report.unexpected)} unexpected {report.unexpected[:3]}"
        )
    fitted = {}
    for key, value in state.items():
        target = own[key]
        if value.shape != target.shape:
            value = _expand_channels(key, value, target)
            report.reshaped.append(key)
        fitted[key] = value.to(target.dtype)
    model.load_state_dict(fitted, strict=False)
    return report


def _expand_channels(key: str, value: Tensor, target: Tensor) -> Tensor:
    """Fill the first input channels of the patch embedding; the new channels are zero."""
    grows = (
        key == "patch_embedding.weight"
        and value.dim() == 5
        and value.shape[0] == target.shape[0]
        and value.shape[2:] == target.shape[2:]
        and value.shape[1] < target.shape[1]
    )
    if not grows:
        raise CheckpointError(
            f"checkpoint does not match the model: {key} has shape {tuple(value.shape)}, "
            f"model needs {tuple(target.shape)}"
        )
    out = torch.zeros(target.shape, dtype=value.dtype)
    out[:, : value.shape[1]] = value
    return out
