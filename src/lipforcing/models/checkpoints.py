"""Checkpoints: our safetensors + config format; every other layout goes through
:mod:`lipforcing.models.weights` (the one loader).

Our format: ``<name>.safetensors`` with the model's state dict under its own (Wan 2.1) names and
``<name>.json`` beside it holding ``{"preset": PresetConfig.to_dict(), "extra": ...}``; the
preset JSON is also stored in the safetensors header, so a lone weights file still loads.
:func:`load_checkpoint` rebuilds the model from the stored preset, or, for a foreign layout
(Wan 2.1 shards, diffusers, the released ``.pth``, a distributed checkpoint), from the
architecture read off the tensors. The stored shapes are checked against a model built on the
meta device before anything is allocated (a header asking for a 14B model cannot make the
loader allocate it), and non-finite weights are refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from lipforcing.config import PresetConfig
from lipforcing.errors import CheckpointError
from lipforcing.models.dit import LipSyncDiT
from lipforcing.models.sources import TensorDict, open_source, read_torch_file, unwrap_state
from lipforcing.models.weights import (
    DIFFUSERS_TO_WAN,
    LORA_ALPHA,
    LoadReport,
    WeightsSpec,
    load_into,
    load_model,
    read_native_preset,
)

__all__ = [
    "DIFFUSERS_TO_WAN",
    "LORA_ALPHA",
    "LoadReport",
    "load_checkpoint",
    "load_pretrained",
    "load_weights",
    "read_preset",
    "read_state_dict",
    "save_checkpoint",
    "student_from_teacher",
]


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """All tensors of a weights file / folder (any layout), unwrapped, on the CPU."""
    path = Path(path)
    if path.suffix in {".pth", ".pt", ".bin"} and path.is_file():
        return unwrap_state(read_torch_file(path), path)
    source = open_source(path)
    keys = source.keys()
    return {k: source.get(k) for k in keys}


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
    """The preset stored beside ``path`` (JSON) or in its safetensors header."""
    preset = read_native_preset(open_source(path))
    if preset is None:
        raise CheckpointError(
            f"{path}: no config ({Path(path).with_suffix('.json').name} beside it, or in the file "
            "header); a foreign layout loads through --checkpoint with its preset family"
        )
    return preset


def load_checkpoint(
    path: str | Path | WeightsSpec,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[LipSyncDiT, PresetConfig]:
    """Any named weights (see :mod:`lipforcing.models.weights`), every parameter present."""
    loaded = load_model(path, device=device, dtype=dtype)
    return loaded.model, loaded.preset


def student_from_teacher(
    path: str | Path | WeightsSpec, device: torch.device | str = "cpu"
) -> tuple[LipSyncDiT, PresetConfig]:
    """A block-causal student initialised from a bidirectional teacher's weights."""
    loaded = load_model(path, attention="block_causal", device=device)
    return loaded.model, loaded.preset


def load_pretrained(model: LipSyncDiT, path: str | Path) -> LoadReport:
    """Load Wan 2.1 / diffusers / OmniAvatar / official Lip Forcing weights into ``model``.

    Lip-sync parameters absent from the file (audio modules, null context) keep their init.
    """
    return load_into(model, open_source(path), allow_missing=True)


def load_weights(
    model: nn.Module, state: dict[str, Tensor], *, source: str = "auto", strict: bool = True
) -> LoadReport:
    """Map an in-memory ``state`` (any naming) onto ``model`` and copy it in.

    ``strict``: every parameter must come from ``state``; otherwise lip-sync parameters may be
    missing (a base Wan checkpoint). Unknown keys and shape mismatches always fail.
    """
    tensors = TensorDict(Path(f"<{source} state dict>"), dict(state), "state dict")
    return load_into(model, tensors, allow_missing=not strict, alpha=LORA_ALPHA)
