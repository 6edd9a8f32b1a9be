"""The training loop shared by the teacher and Stage 1 (one loss function, one trainee).

Per optimiser step: ``accum`` micro-batches per process, each drawn from its own generator
(seed, step, global micro index), loss / accum back-propagated, gradients averaged over
processes, clipped, AdamW step. Every ``save_every`` steps (and at the end) the full state is
saved atomically; a run folder with a ``state.pt`` resumes exactly where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from lipforcing.config import OptimConfig
from lipforcing.distill.checkpointing import load_state, save_state
from lipforcing.distill.distributed import all_mean, print0
from lipforcing.distill.latents import micro_generator
from lipforcing.distill.optim import accumulation, make_optimizer, optimizer_step

StepFn = Callable[[nn.Module, torch.Generator], tuple[torch.Tensor, dict[str, float]]]


def train(
    model: nn.Module,
    step_fn: StepFn,
    cfg: OptimConfig,
    run_dir: str | Path | None,
    *,
    seed: int = 0,
    rank: int = 0,
    world: int = 1,
    save_every: int = 100,
    stop_at: int | None = None,
    desc: str = "train",
    log: Callable[[int, dict], None] | None = None,
) -> list[float]:
    """Run optimiser steps up to ``cfg.steps`` (or ``stop_at``); returns the per-step losses.

    ``step_fn(model, generator) -> (loss, metrics)`` draws its own micro-batch from the generator.
    """
    opt, sched = make_optimizer(model, cfg)
    accum = accumulation(cfg, world)
    state_path = Path(run_dir) / "state.pt" if run_dir else None
    step, extra = 0, {"losses": []}
    if state_path and state_path.exists():
        step, extra = load_state(
            state_path,
            models={"model": model},
            optimizers={"opt": opt},
            schedulers={"sched": sched},
        )
        print0(f"{desc}: resumed at step {step}")
    losses = list(extra["losses"])
    end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
    bar = tqdm(range(step, end), desc=desc, disable=rank != 0, initial=step, total=end)
    t0 = time.perf_counter()
    for step in bar:
        total, metrics = 0.0, {}
        for k in range(accum):
            g = micro_generator(seed, step, k * world + rank)
            loss, metrics = step_fn(model, g)
            (loss / accum).backward()
            total += float(loss.detach()) / accum
        gnorm = optimizer_step(model, opt, sched, cfg.grad_clip)
        total = all_mean(total)
        losses.append(total)
        bar.set_postfix(loss=f"{total:.4f}")
        if log is not None:
            log(step, {"loss": total, "grad_norm": gnorm, "lr": sched.get_last_lr()[0], **metrics})
        done = step + 1
        if state_path and rank == 0 and (done % save_every == 0 or done == end):
            save_state(
                state_path,
                step=done,
                models={"model": model},
                optimizers={"opt": opt},
                schedulers={"sched": sched},
                extra={"losses": losses},
            )
    print0(f"{desc}: {end} steps, {time.perf_counter() - t0:.1f} s this run")
    return losses
