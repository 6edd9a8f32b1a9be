"""Atomic save / exact resume of a training run: models, optimisers, schedulers, RNGs, step.

One ``state.pt`` per run folder, written to a temporary file and moved into place with
``os.replace`` so a crash never leaves a half-written checkpoint. Resuming restores every
generator the loop draws from, so the loss trace after a resume equals the uninterrupted one.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


def save_state(
    path: str | Path,
    *,
    step: int,
    models: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, object] | None = None,
    generators: dict[str, torch.Generator] | None = None,
    extra: dict | None = None,
) -> None:
    """Write everything needed to continue at ``step`` (atomic: temp file + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "models": {k: m.state_dict() for k, m in models.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in (schedulers or {}).items()},
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
        "torch_rng": torch.get_rng_state(),
        "extra": extra or {},
    }
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(
    path: str | Path,
    *,
    models: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, object] | None = None,
    generators: dict[str, torch.Generator] | None = None,
) -> tuple[int, dict]:
    """Restore in place; returns (step, extra)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    for k, m in models.items():
        m.load_state_dict(state["models"][k])
    for k, o in optimizers.items():
        o.load_state_dict(state["optimizers"][k])
    for k, s in (schedulers or {}).items():
        s.load_state_dict(state["schedulers"][k])
    for k, g in (generators or {}).items():
        g.set_state(state["generators"][k])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), state["extra"]
