"""Toy models and batches shared by the distillation tests."""

from __future__ import annotations

import dataclasses

import torch

from lipforcing.models import build_model
from lipforcing.models.conditioning import LipSyncCond
from toy_models import toy_config

HW = (4, 4)
CFG = toy_config()


def toy_model(attention: str = "block_causal", seed: int = 0):
    torch.manual_seed(seed)
    m = build_model(dataclasses.replace(CFG, attention=attention))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return m


def toy_cond(batch: int, frames: int, seed: int = 0) -> LipSyncCond:
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g)

    return LipSyncCond(
        r(batch, 16, frames, *HW),
        (r(batch, 1, frames, *HW) > 0).float(),
        r(batch, 16, frames, *HW),
        r(batch, 16, frames, *HW),
        r(batch, 4 * frames, CFG.audio_feature_dim),
    )


def toy_batch(batch: int, frames: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed + 1)
    return {
        "x0": torch.randn(batch, 16, frames, *HW, generator=g),
        "cond": toy_cond(batch, frames, seed),
    }


def toy_step(model, g):
    """Flow-matching loss of a toy model on a batch drawn from the generator ``g``."""
    from lipforcing.diffusion.losses import flow_matching_loss

    seed = int(torch.randint(1_000_000, (1,), generator=g))
    batch = toy_batch(2, 3, seed)
    t = torch.rand(2, generator=g)
    noise = torch.randn(batch["x0"].shape, generator=g)
    loss = flow_matching_loss(model, batch["x0"], t, noise, batch["cond"])
    return loss, {}


def dist_worker(rank: int, world: int, init_file: str, out: str) -> None:
    """One process of the gloo equivalence test: 2 steps, rank 0 writes the parameters."""
    import torch.distributed as dist

    from lipforcing.config import OptimConfig
    from lipforcing.distill.loop import train

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = toy_model()
    cfg = OptimConfig(lr=1e-3, warmup_steps=0, batch_size=4, micro_batch=2, steps=2)
    losses = train(model, toy_step, cfg, None, rank=rank, world=world, desc="dist")
    if rank == 0:
        torch.save({"params": model.state_dict(), "losses": losses}, out)
    dist.destroy_process_group()
