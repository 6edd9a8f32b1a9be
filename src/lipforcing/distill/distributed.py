"""Process-group plumbing: torchrun or a single process, FSDP2 on GPU, gradient averaging on CPU.

One code path for 1 or N processes: a single process is a world of size 1. On CUDA (NCCL) the
trainee is sharded with FSDP2 ``fully_shard`` per DiT block, then the root (bf16 params, fp32
reduce). On CPU (gloo, which lacks reduce-scatter for FSDP2) parameters stay replicated and
gradients are all-reduced (mean) before the optimiser step, which gives the same update.
Frozen teacher / codec / SyncNet are never wrapped.

Multi-node: torchrun's rendezvous sets RANK / WORLD_SIZE / MASTER_ADDR for every process
(``docs/TRAINING.md``); the process group starts from those variables.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def init_distributed() -> tuple[int, int, torch.device]:
    """(rank, world_size, device); starts a process group when launched by torchrun."""
    if "RANK" in os.environ and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    device = training_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return rank, world, device


def finish_distributed() -> None:
    """End the process group started by :func:`init_distributed`: every process waits for the
    others (a barrier), then the group is destroyed. Without the barrier a process that leaves
    first can tear its gloo connections down under a peer still finishing, which aborts one of
    them (SIGABRT, "terminate called without an active exception", seen under load). A no-op
    in a single process."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def training_device() -> torch.device:
    """This process's device: its GPU (torchrun's LOCAL_RANK) when CUDA is there, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def print0(*args, **kwargs) -> None:
    """Print on rank 0 only."""
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(*args, **kwargs, flush=True)


def shard_model(model: nn.Module, recompute: bool = False) -> nn.Module:
    """Per-block activation recomputation (optional), then FSDP2 on CUDA: ``fully_shard`` per
    block, then the root (bf16 params, fp32 reduce); unsharded on CPU.

    ``recompute`` re-runs each block's forward in the backward instead of storing its
    activations (``torch.distributed._composable.checkpoint``: parameter names unchanged). Only
    for models trained on whole sequences (teacher, Stage-1 student, critic): a Stage-2 student
    call reads a KV cache that later chunks change, so recomputing it would attend to the wrong
    cache.
    """
    if recompute:
        from torch.distributed._composable import checkpoint

        for block in model.blocks:
            checkpoint(block)
    if not (dist.is_initialized() and torch.cuda.is_available()):
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    return model


def average_gradients(model: nn.Module) -> None:
    """Mean of gradients over processes (CPU/gloo path; FSDP2 reduces by itself)."""
    if not dist.is_initialized() or dist.get_world_size() == 1 or torch.cuda.is_available():
        return
    world = dist.get_world_size()
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world


def all_mean(values: dict[str, float]) -> dict[str, float]:
    """Mean of scalar metrics over processes (one all-reduce; every rank has the same keys)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / dist.get_world_size() for k, v in zip(keys, t)}


def world_info() -> tuple[int, int]:
    """(rank, world size) of the current process group; (0, 1) without one."""
    if not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()
