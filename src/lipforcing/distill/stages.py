"""The three training stages on a pre-encoded latent cache, each resumable from its run folder.

- :func:`run_teacher`: bidirectional flow matching with CFG dropout -> ``teacher.safetensors``.
- :func:`run_stage1`: Diffusion Forcing of the block-causal student initialised from the
  teacher -> ``student.safetensors``.
- :func:`run_stage2`: Self Forcing DMD (student + fake-score critic, frozen teacher, optional
  SyncNet reward) -> ``student.safetensors``.

A stage whose final checkpoint exists is skipped; an interrupted one resumes from ``state.pt``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from lipforcing.config import DiffusionForcingConfig, DMDConfig, PresetConfig, TeacherTrainConfig
from lipforcing.distill.checkpointing import load_state, save_state
from lipforcing.distill.diffusion_forcing import diffusion_forcing_step, teacher_step
from lipforcing.distill.distributed import print0, shard_model
from lipforcing.distill.dmd import critic_step, student_step
from lipforcing.distill.latents import batch_indices, make_batch, micro_generator
from lipforcing.distill.loop import train
from lipforcing.distill.optim import make_optimizer, optimizer_step
from lipforcing.distill.reward import RewardFn
from lipforcing.models import build_model
from lipforcing.models.checkpoints import (
    load_checkpoint,
    load_weights,
    read_state_dict,
    save_checkpoint,
    student_from_teacher,
)


def _logger(run_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb"))

    def log(step: int, metrics: dict) -> None:
        for k, v in metrics.items():
            writer.add_scalar(k, float(v), step)
        writer.flush()

    return log


def _save_final(path: Path, model: nn.Module, preset: PresetConfig, extra: dict) -> None:
    """Rank 0 writes the stage's checkpoint; the others wait for it."""
    import torch.distributed as dist

    if _world()[0] == 0:
        save_checkpoint(path, model, preset, extra)
    if dist.is_initialized():
        dist.barrier()


def _world() -> tuple[int, int]:
    """(rank, world size) of the current process group; (0, 1) without one."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def _sampler(cache: dict, preset: PresetConfig, micro: int, frames: int):
    n, pack = cache["x0"].shape[0], preset.model.audio_pack_frames

    def batch(g: torch.Generator) -> dict:
        return make_batch(cache, batch_indices(n, micro, g), pack, frames)

    return batch


def _train_and_save(model, step, cfg, preset, run_dir: Path, final: Path, *, seed: int, stage: str):
    """Shard, run the resumable loop of one single-model stage, write its final checkpoint."""
    rank, world = _world()
    model = shard_model(model)
    log = _logger(run_dir)
    losses = train(
        model, step, cfg.optim, run_dir, seed=seed, rank=rank, world=world, desc=stage, log=log
    )
    extra = {
        "stage": stage,
        "config": dataclasses.asdict(cfg),
        "final_loss": losses[-1] if losses else None,
    }
    _save_final(final, model, preset, extra)


def run_teacher(
    cache: dict,
    preset: PresetConfig,
    cfg: TeacherTrainConfig,
    run_dir: Path,
    *,
    seed: int = 0,
    init: str | Path | None = None,
) -> Path:
    """Train the bidirectional teacher; returns its checkpoint path.

    ``init``: a checkpoint of the same shape (teacher or student: attention masks hold no
    weights) to start from instead of a fresh initialisation (fine-tuning).
    """
    final = run_dir / "teacher.safetensors"
    if final.exists():
        print0(f"teacher: {final} exists, skipped")
        return final
    preset = preset.with_attention("bidirectional")
    torch.manual_seed(seed)
    model = build_model(preset.model)
    if init is not None:
        load_weights(model, read_state_dict(init), source="native", strict=True)
    sample = _sampler(cache, preset, cfg.optim.micro_batch, cfg.latent_frames)
    step = lambda m, g: teacher_step(m, sample(g), cfg, g)  # noqa: E731
    _train_and_save(model, step, cfg, preset, run_dir, final, seed=seed, stage="teacher")
    return final


def run_stage1(
    cache: dict, teacher_path: Path, cfg: DiffusionForcingConfig, run_dir: Path, *, seed: int = 0
) -> Path:
    """Diffusion Forcing from the teacher's weights; returns the student checkpoint path."""
    final = run_dir / "student.safetensors"
    if final.exists():
        print0(f"stage1: {final} exists, skipped")
        return final
    model, preset = student_from_teacher(teacher_path)
    sample = _sampler(cache, preset, cfg.optim.micro_batch, cfg.latent_frames)

    def step(m, g):
        return diffusion_forcing_step(m, sample(g), cfg, preset.causal, preset.schedule, g)

    _train_and_save(model, step, cfg, preset, run_dir, final, seed=seed, stage="stage1")
    return final


def run_stage2(
    cache: dict,
    student_path: Path,
    teacher_path: Path,
    cfg: DMDConfig,
    run_dir: Path,
    *,
    seed: int = 0,
    reward_fn: RewardFn | None = None,
    save_every: int = 10,
) -> Path:
    """Self Forcing DMD: 1 student update per ``cfg.critic_steps`` critic updates.

    The critic (fake score) starts from the teacher's weights as a bidirectional model and is
    never guided; the teacher is frozen (no grads, never wrapped or sharded).
    """
    final = run_dir / "student.safetensors"
    if final.exists():
        print0(f"stage2: {final} exists, skipped")
        return final
    student, preset = load_checkpoint(student_path)
    teacher, _ = load_checkpoint(teacher_path)
    critic, _ = load_checkpoint(teacher_path)
    teacher.requires_grad_(False).eval()  # frozen, never sharded with the trainees
    rank, world = _world()
    student, critic = shard_model(student), shard_model(critic)
    if cfg.drop_mode is not None:
        preset = dataclasses.replace(
            preset, schedule=dataclasses.replace(preset.schedule, drop_mode=cfg.drop_mode)
        )
    causal, schedule = preset.causal, preset.schedule
    frames = cfg.num_chunks * causal.chunk_frames
    micro = cfg.optim.micro_batch
    sample = _sampler(cache, preset, micro, frames)
    opt_s, sch_s = make_optimizer(student, cfg.optim)
    opt_c, sch_c = make_optimizer(critic, cfg.optim, lr=cfg.critic_lr)
    models = {"student": student, "critic": critic}
    opts = {"student": opt_s, "critic": opt_c}
    scheds = {"student": sch_s, "critic": sch_c}
    state_path = run_dir / "state.pt"
    start, extra = 0, {"metrics": []}
    if state_path.exists():
        start, extra = load_state(state_path, models=models, optimizers=opts, schedulers=scheds)
        print0(f"stage2: resumed at step {start}")
    history = list(extra["metrics"])
    log = _logger(run_dir)
    t0 = time.perf_counter()
    for step in tqdm(
        range(start, cfg.optim.steps), desc="stage2", initial=start, total=cfg.optim.steps
    ):
        # 1. Critic: flow matching on fresh student samples, critic_steps updates.
        for k in range(cfg.critic_steps):
            g = micro_generator(seed, step, 1000 + k * world + rank)
            closs, _ = critic_step(critic, student, sample(g), cfg, causal, schedule, g)
            closs.backward()
            optimizer_step(critic, opt_c, sch_c, cfg.optim.grad_clip)
        # 2. Student: rollout with gradients at j*, DMD vs the (window-)guided teacher, reward.
        g = micro_generator(seed, step, rank)
        loss, metrics = student_step(
            student, teacher, critic, sample(g), cfg, causal, schedule, g, reward_fn
        )
        loss.backward()
        critic.zero_grad(set_to_none=True)
        gnorm = optimizer_step(student, opt_s, sch_s, cfg.optim.grad_clip)
        metrics.update(critic_loss=float(closs.detach()), grad_norm=gnorm)
        history.append(metrics)
        log(step, metrics)
        if rank == 0 and ((step + 1) % save_every == 0 or step + 1 == cfg.optim.steps):
            save_state(
                state_path,
                step=step + 1,
                models=models,
                optimizers=opts,
                schedulers=scheds,
                extra={"metrics": history},
            )
    print0(f"stage2: {cfg.optim.steps} steps, {time.perf_counter() - t0:.1f} s this run")
    _save_final(
        final,
        student,
        preset,
        {"stage": "stage2", "config": dataclasses.asdict(cfg), "metrics_tail": history[-5:]},
    )
    return final


def frozen(model: nn.Module) -> nn.Module:
    """No grads, eval mode (teacher / codec / SyncNet)."""
    return model.requires_grad_(False).eval()
