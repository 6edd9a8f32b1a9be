"""Distributed checkpoints of a training run: resumable on any process count, exportable.

A run folder holds ``checkpoint/``, a ``torch.distributed.checkpoint`` (DCP) folder as FSDP2
training writes it, and ``trainer.json`` beside it (step, scheduler states, loss history,
hook states: plain JSON). The DCP folder holds, per trainee, its *trainable* parameters
(``models/<name>/<param>``; the whole model when fully fine-tuned, the LoRA factors plus the
fully trained modules when LoRA is on, the frozen base being reloaded from its own weights),
its AdamW state (``optimizers/<name>``) and its EMA (``ema/<name>/<param>``).

Design choices:
- Every process writes its own shards (FSDP2: each rank's part of every DTensor; replicated
  CPU/gloo training: DCP deduplicates). Saving writes ``checkpoint.tmp`` and renames it once
  every rank is done, so a crash never leaves a half-written checkpoint. For multi-node runs
  the run folder must be on a file system every node sees.
- Loading never executes code from the files: tensor files go through
  ``torch.load(weights_only=True)`` (DCP's own reader) and DCP's pickled metadata through an
  unpickler that only rebuilds DCP's metadata classes (:class:`SafeReader`).
- :func:`export_trainable` gathers one trainee's tensors of a DCP folder into a flat state dict
  on one process, without a process group (what ``lipforcing convert`` writes to one file).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from lipforcing.errors import CheckpointError

CHECKPOINT = "checkpoint"  # DCP folder name inside a run folder
TRAINER = "trainer.json"  # step, schedulers, history, hooks


class _MetadataUnpickler(pickle.Unpickler):
    """Rebuilds DCP metadata only: its dataclasses, torch dtypes / sizes / layouts, paths."""

    MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.filesystem")

    def find_class(self, module: str, name: str) -> Any:
        if module in self.MODULES and not name.startswith("__"):
            return super().find_class(module, name)
        if module == "torch" and (
            name == "Size" or isinstance(getattr(torch, name, None), torch.dtype)
        ):
            return getattr(torch, name)
        if (module, name) in {("torch.serialization", "_get_layout"), ("pathlib", "PosixPath")}:
            return super().find_class(module, name)
        if (module, name) in {("collections", "OrderedDict"), ("builtins", "set")}:
            return super().find_class(module, name)
        raise CheckpointError(f"refused to resume: its metadata names {module}.{name}")


class SafeReader(dcp.FileSystemReader):
    """DCP's file reader with a metadata unpickler that cannot run arbitrary code."""

    def read_metadata(self, *args: Any, **kwargs: Any):
        path = Path(self.path) / ".metadata"
        try:
            metadata = _MetadataUnpickler(io.BytesIO(path.read_bytes())).load()
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e} (only tensors and DCP metadata are read)") from None
        except Exception as e:
            raise CheckpointError(
                f"{path}: unreadable checkpoint metadata ({_first_line(e)})"
            ) from None
        from torch.distributed.checkpoint.metadata import StorageMeta

        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


@contextmanager
def _single_process_ok():
    """DCP warns that it assumes one process when there is no process group: that is meant."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        yield


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's trainable parameters by name (sharded DTensors under FSDP2)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in get_model_state_dict(model).items() if k in names}


def has_checkpoint(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / CHECKPOINT / ".metadata").is_file() and (run_dir / TRAINER).is_file()


def save_run(
    run_dir: str | Path,
    models: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    emas: dict[str, dict[str, torch.Tensor]],
    trainer: dict,
) -> None:
    """Collective: every process calls it. Writes ``checkpoint/`` and ``trainer.json``."""
    run_dir = Path(run_dir)
    tmp, final = run_dir / (CHECKPOINT + ".tmp"), run_dir / CHECKPOINT
    if _rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    state = {
        "models": {k: trainable_state(m) for k, m in models.items()},
        "optimizers": {k: get_optimizer_state_dict(models[k], o) for k, o in optimizers.items()},
        "ema": emas,
    }
    with _single_process_ok():
        dcp.save(state, storage_writer=dcp.FileSystemWriter(tmp), no_dist=not dist.is_initialized())
    _barrier()
    if _rank() == 0:
        old = run_dir / (CHECKPOINT + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        _write_json(run_dir / TRAINER, trainer)
        shutil.rmtree(old, ignore_errors=True)
    _barrier()


def load_run(
    run_dir: str | Path,
    models: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    emas: dict[str, dict[str, torch.Tensor]],
) -> dict:
    """Collective: restore trainables, optimiser states and EMAs in place; returns trainer.json."""
    run_dir = Path(run_dir)
    state = {
        "models": {k: trainable_state(m) for k, m in models.items()},
        "optimizers": {k: get_optimizer_state_dict(models[k], o) for k, o in optimizers.items()},
        "ema": emas,
    }
    from torch.distributed.checkpoint.api import CheckpointException

    SafeReader(run_dir / CHECKPOINT).read_metadata()  # a refused metadata file: its message
    try:
        with _single_process_ok():
            dcp.load(
                state,
                storage_reader=SafeReader(run_dir / CHECKPOINT),
                no_dist=not dist.is_initialized(),
            )
    except (Exception, CheckpointException) as e:  # wrong run folder, or tensor files that are not
        raise CheckpointError(
            f"{run_dir / CHECKPOINT}: refused to resume, it does not hold this run's tensors "
            f"({_first_line(e)})"
        ) from None
    try:
        trainer = json.loads((run_dir / TRAINER).read_text())
    except ValueError as e:
        raise CheckpointError(f"{run_dir / TRAINER}: unreadable ({e})") from None
    for k, m in models.items():
        set_model_state_dict(m, state["models"][k], options=_partial())
    for k, o in optimizers.items():
        set_optimizer_state_dict(models[k], o, state["optimizers"][k])
    return trainer


def _first_line(e: BaseException) -> str:
    """The first line of an error, without torch's advice to load unsafely."""
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return line.split(" Re-running `torch.load` with `weights_only")[0][:200]


def _partial():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(strict=False)


def export_trainable(
    ckpt_dir: str | Path, name: str, *, ema: bool = False
) -> dict[str, torch.Tensor]:
    """One trainee's trainable tensors (or its EMA) from a DCP folder, gathered on this process.

    Runs without a process group, whatever the number of processes that wrote the folder.
    """
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    reader = SafeReader(ckpt_dir)
    meta = reader.read_metadata()
    prefix = f"{'ema' if ema else 'models'}.{name}."
    state = {}
    for key, item in meta.state_dict_metadata.items():
        if key.startswith(prefix) and isinstance(item, TensorStorageMetadata):
            state[key] = torch.empty(item.size, dtype=item.properties.dtype)
    if not state:
        raise CheckpointError(f"{ckpt_dir}: no tensors of {prefix[:-1]!r} in this checkpoint")
    with _single_process_ok():
        dcp.load(state, storage_reader=SafeReader(ckpt_dir), no_dist=True)
    return {k[len(prefix) :]: v for k, v in state.items()}


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)


def export_checkpoint(
    run_dir: str | Path, name: str, out: str | Path, *, ema: bool = False
) -> Path:
    """Write trainee ``name`` of a run's distributed checkpoint (or its EMA) as one file on one
    process: a full checkpoint (``.safetensors`` + ``.json``), or the adapter alone for a LoRA
    trainee (its JSON naming the base it applies to)."""
    from lipforcing.config import LoraConfig, PresetConfig
    from lipforcing.distill.lora import save_adapter
    from lipforcing.models.checkpoints import save_checkpoint

    run_dir = Path(run_dir)
    if not has_checkpoint(run_dir):
        raise CheckpointError(f"{run_dir}: no distributed checkpoint (checkpoint/, trainer.json)")
    meta = json.loads((run_dir / TRAINER).read_text()).get("trainees", {}).get(name)
    if not meta:
        raise CheckpointError(f"{run_dir}: no trainee {name!r} in this run")
    state = export_trainable(run_dir / CHECKPOINT, name, ema=ema)
    preset = PresetConfig.from_dict(meta["preset"])
    extra = {"exported_from": str(run_dir), "ema": ema}
    extra |= {k: meta[k] for k in ("base", "base_adapters") if k in meta}
    if meta.get("lora"):
        return save_adapter(out, state, LoraConfig(**meta["lora"]), preset, extra)
    return save_checkpoint(out, StateDict(state), preset, extra)


class StateDict:
    """A state dict with the one method ``save_checkpoint`` reads."""

    def __init__(self, state: dict) -> None:
        self._state = state

    def state_dict(self) -> dict:
        return self._state
