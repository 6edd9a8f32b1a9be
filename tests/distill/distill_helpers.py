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


def toy_step(model, draws):
    """Flow-matching loss of a toy model on a micro-batch drawn sample by sample."""
    from lipforcing.diffusion.losses import flow_matching_loss

    seeds = draws.randint(1_000_000)
    batch = cat_batches([toy_batch(1, 3, int(s)) for s in seeds])
    t = draws.rand()
    noise = draws.randn(batch["x0"].shape[1:])
    loss = flow_matching_loss(model, batch["x0"], t, noise, batch["cond"])
    return loss, {}


def cat_batches(batches: list[dict]) -> dict:
    cond = batches[0]["cond"]
    for b in batches[1:]:
        cond = cond.cat(b["cond"])
    return {"x0": torch.cat([b["x0"] for b in batches]), "cond": cond}


def train_toy(model, cfg, run_dir=None, **kw):
    """The one training loop on a toy model with one trainee."""
    from lipforcing.distill.loop import Plan, Trainee, train

    plan = Plan(cfg.steps, cfg.batch_size, cfg.micro_batch)
    step = lambda role, draws: toy_step(model, draws)  # noqa: E731
    return train({"model": Trainee(model, cfg)}, step, plan, run_dir, **kw).losses()


def dist_worker(rank: int, world: int, init_file: str, out: str, micro: int = 2) -> None:
    """One process of the gloo equivalence test: 2 steps, rank 0 writes the parameters."""
    import torch.distributed as dist

    from lipforcing.config import OptimConfig
    from lipforcing.distill.distributed import finish_distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = toy_model()
    cfg = OptimConfig(lr=1e-3, warmup_steps=0, batch_size=4, micro_batch=micro, steps=2)
    losses = train_toy(model, cfg, desc="dist")
    if rank == 0:
        torch.save({"params": model.state_dict(), "losses": losses}, out)
    finish_distributed()


def stage2_setup(root, steps: int = 4, micro: int = 1, **dmd):
    """A toy teacher and Stage-1 student (trained for 1 step each) and a Stage-2 config with
    student and critic updates alternating (4 iterations: 2 student + 2 critic updates).

    Tests start the critic from the Stage-1 weights: a critic equal to the teacher gives a
    first DMD gradient of ~1e-9, which Adam (eps 1e-8) turns into steps set by rounding noise.
    """
    from pathlib import Path

    from test_stages import toy_cache, toy_preset

    from lipforcing.config import DiffusionForcingConfig, DMDConfig, OptimConfig, TeacherTrainConfig
    from lipforcing.distill.stages import run_stage1, run_teacher

    root = Path(root)
    preset = toy_preset()
    cache = toy_cache(preset, n=6)
    opt = OptimConfig(lr=1e-3, warmup_steps=0, batch_size=4, micro_batch=2, steps=1)
    teacher = run_teacher(cache, preset, TeacherTrainConfig(optim=opt, latent_frames=6), root / "t")
    s1 = run_stage1(cache, teacher, DiffusionForcingConfig(optim=opt, latent_frames=6), root / "s1")
    optim = OptimConfig(
        lr=1e-3, betas=(0.0, 0.999), warmup_steps=0, batch_size=4, micro_batch=micro, steps=steps
    )
    cfg = DMDConfig(
        optim=optim,
        steps_unit="iteration",
        critic_steps=1,
        critic_lr=1e-3,
        num_chunks=2,
        ema=0.9,
        **dmd,
    )
    return cache, teacher, s1, cfg


def sample_reward(x0, batch):
    """A deterministic per-sample reward (depends on the sample only, not on the batch)."""
    return 0.3 * torch.tanh(x0.float().mean(dim=(1, 2, 3, 4)) * 10)


def stage2_worker(rank: int, world: int, init_file: str, setup: str, root: str, micro: int) -> None:
    """One process of the Stage-2 gloo equivalence test."""
    from pathlib import Path

    import torch.distributed as dist

    from lipforcing.distill.distributed import finish_distributed
    from lipforcing.distill.stages import run_stage2

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    cache, teacher, s1, cfg = stage2_setup(setup, micro=micro)
    run_stage2(cache, s1, teacher, cfg, Path(root) / "s2", reward_fn=sample_reward, critic_path=s1)
    finish_distributed()
