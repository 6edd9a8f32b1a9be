"""Atomic save / exact resume of a training run: models, optimisers, schedulers, RNGs, step.

One ``state.pt`` per run folder, written to a temporary file and moved into place with
``os.replace`` so a crash never leaves a half-written checkpoint. Resuming restores every
generator the loop draws from, so the loss trace after a resume equals the uninterrupted one.

Resuming never runs code from the run folder: ``state.pt`` is read with
``torch.load(weights_only=True)``, whose unpickler admits only tensors and plain containers
(dicts, lists, numbers, strings). A file that asks for anything else (a crafted pickle calling
``os.system``, say) is refused with one :class:`CheckpointError` before any object is built.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from lipforcing.errors import CheckpointError


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
    """Restore in place; returns (step, extra).

    Raises:
        CheckpointError: the file is not a training state this function wrote (unreadable,
            truncated, or a pickle that would run code: refused without running it).
    """
    state = _read_state(Path(path))
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


def saved_step(path: str | Path) -> int | None:
    """The step a run's ``state.pt`` was saved at (None: no file); read as safely as a resume."""
    path = Path(path)
    return int(_read_state(path)["step"]) if path.is_file() else None


STATE_KEYS = ("step", "models", "optimizers", "schedulers", "generators", "torch_rng", "extra")


def _read_state(path: Path) -> dict:
    """``torch.load(weights_only=True)`` of ``path``, every failure as one CheckpointError."""
    hint = "delete it to restart the run from scratch"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        what = _refusal_reason(str(e))
        raise CheckpointError(
            f"{path}: refused to resume: the file holds objects other than tensors and plain "
            f"data, and loading them could run code ({what}); {hint}"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        first = str(e).split("\n")[0]
        raise CheckpointError(f"{path}: not a readable training state ({first}); {hint}") from None
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        raise CheckpointError(f"{path}: not a lipforcing training state; {hint}")
    return state


def _refusal_reason(message: str) -> str:
    """The line of torch's weights-only refusal that names the blocked object (its other lines
    advise re-running with ``weights_only=False``, which is exactly what must not happen)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    named = [line for line in lines if "global" in line.lower()]
    return (named or lines or ["unsupported object"])[0].rstrip(".")
