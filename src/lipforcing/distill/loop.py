"""The one training loop of every stage: teacher, Stage 1 and Stage 2 differ by their step.

Per iteration ``i``:

1. ``plan.role(i)`` names the trainee updated now (one trainee for the teacher and Stage 1;
   the student or the fake-score critic for Stage 2).
2. Gradient accumulation to the global batch: each process runs ``accum`` micro-batches,
   ``world * accum * micro_batch == batch_size``; micro-batch k of rank r holds the global
   samples ``(k * world + r) * micro_batch + [0, micro_batch)`` and draws everything from
   their own generators (:class:`~lipforcing.distill.draws.Draws`), so the update does not
   depend on how the batch is split over micro-batches and processes.
3. ``loss / accum`` is back-propagated per micro-batch; gradients are averaged over processes
   (FSDP2 reduce-scatter on CUDA, an all-reduce on CPU), clipped, and AdamW steps.
4. Every trainee with an EMA updates it (the release's EMA callback runs every iteration).
5. Every ``save_every`` iterations, and at the end, the run is checkpointed
   (:mod:`lipforcing.distill.run_state`); a run folder with a checkpoint resumes exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn
from tqdm import tqdm

from lipforcing.config import OptimConfig
from lipforcing.distill.distributed import all_mean, print0, world_info
from lipforcing.distill.draws import Draws
from lipforcing.distill.ema import EMA
from lipforcing.distill.optim import accumulation, make_optimizer, optimizer_step
from lipforcing.distill.run_state import has_checkpoint, load_run, save_run

StepFn = Callable[[str, Draws], tuple[Tensor, dict[str, float]]]  # (role, draws) -> loss, metrics


@dataclass
class Trainee:
    """A model being trained with its optimiser settings (``lr`` overrides ``optim.lr``)."""

    model: nn.Module
    optim: OptimConfig
    lr: float | None = None
    ema: float | None = None  # EMA decay of its trainable parameters; None: no EMA
    meta: dict = field(default_factory=dict)  # JSON kept in trainer.json (preset, LoRA, base)


class Hook(Protocol):
    """State carried across iterations besides the models (e.g. the reward's running mean)."""

    def after_step(self, role: str, metrics: dict[str, float]) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass(frozen=True)
class Plan:
    """How many iterations, which trainee each updates, and the batch split."""

    iterations: int
    batch_size: int  # global samples per iteration
    micro_batch: int  # samples per process per forward
    roles: tuple[str, ...] = ("model",)  # trainee of iteration i: roles[i % len(roles)]

    def role(self, i: int) -> str:
        return self.roles[i % len(self.roles)]


@dataclass
class RunResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per iteration

    def losses(self, role: str | None = None) -> list[float]:
        return [h["loss"] for h in self.history if role is None or h["role"] == role]


def train(
    trainees: dict[str, Trainee],
    step_fn: StepFn,
    plan: Plan,
    run_dir: str | Path | None,
    *,
    seed: int = 0,
    save_every: int = 100,
    stop_at: int | None = None,
    desc: str = "train",
    log: Callable[[int, dict], None] | None = None,
    hooks: dict[str, Hook] | None = None,
    step_seconds: list[float] | None = None,
) -> RunResult:
    """Run iterations up to ``plan.iterations`` (or ``stop_at``), resuming from ``run_dir``.

    ``step_seconds`` gets the wall seconds of every iteration run (update, EMA and hooks; not
    the checkpoint writes) appended: a caller sizing a run from its first steps reads them."""
    rank, world = world_info()
    hooks = hooks or {}
    opts = {k: make_optimizer(t.model, t.optim, lr=t.lr) for k, t in trainees.items()}
    emas = {k: EMA(t.model, t.ema) for k, t in trainees.items() if t.ema is not None}
    accum = accumulation(plan.batch_size, plan.micro_batch, world)
    start, result = 0, RunResult()
    if run_dir is not None and has_checkpoint(run_dir):
        start, result = _resume(run_dir, trainees, opts, emas, hooks)
        print0(f"{desc}: resumed at iteration {start}")
    end = plan.iterations if stop_at is None else min(plan.iterations, stop_at)
    bar = tqdm(range(start, end), desc=desc, disable=rank != 0, initial=start, total=end)
    t0 = time.perf_counter()
    for i in bar:
        role = plan.role(i)
        tick = time.perf_counter()
        metrics = _iteration(trainees, opts[role], role, step_fn, i, seed, accum, plan, rank, world)
        for ema in emas.values():
            ema.update()
        for hook in hooks.values():
            hook.after_step(role, metrics)
        if step_seconds is not None:
            step_seconds.append(time.perf_counter() - tick)
        result.history.append(metrics)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}", role=role)
        if log is not None:
            log(i, metrics)
        done = i + 1
        if run_dir is not None and (done % save_every == 0 or done == end):
            trainer = {
                "step": done,
                "history": result.history,
                "trainees": {k: t.meta for k, t in trainees.items()},
                **_sched_states(opts, hooks),
            }
            save_run(run_dir, _models(trainees), _optims(opts), _ema_states(emas), trainer)
    print0(f"{desc}: {end} iterations, {time.perf_counter() - t0:.1f} s this run")
    return result


def _iteration(trainees, opt_sched, role, step_fn, i, seed, accum, plan, rank, world) -> dict:
    """Steps 2-3 of the module docstring for the trainee ``role``; returns averaged metrics."""
    trainee = trainees[role]
    for t in trainees.values():
        t.model.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    for k in range(accum):
        first = (k * world + rank) * plan.micro_batch
        draws = Draws.for_micro_batch(seed, i, first, plan.micro_batch)
        _gradient_sync(trainee.model, k == accum - 1)
        loss, metrics = step_fn(role, draws)
        (loss / accum).backward()
        for key, v in {"loss": float(loss.detach()), **metrics}.items():
            totals[key] = totals.get(key, 0.0) + float(v) / accum
    for t in trainees.values():  # a loss may reach other trainees' parameters: drop it
        if t is not trainee:
            t.model.zero_grad(set_to_none=True)
    opt, sched = opt_sched
    gnorm = optimizer_step(trainee.model, opt, sched, trainee.optim.grad_clip)
    out = all_mean(totals)
    return {"role": role, **out, "grad_norm": gnorm, "lr": sched.get_last_lr()[0]}


def _gradient_sync(model: nn.Module, sync: bool) -> None:
    """FSDP2: reduce-scatter gradients on the last micro-batch only."""
    if hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(sync)


def _resume(run_dir, trainees, opts, emas, hooks) -> tuple[int, RunResult]:
    state = load_run(run_dir, _models(trainees), _optims(opts), _ema_states(emas))
    for k, (_, sched) in opts.items():
        sched.load_state_dict(state["schedulers"][k])
    for k, hook in hooks.items():
        hook.load_state_dict(state["hooks"][k])
    for ema in emas.values():
        ema.started = int(state["step"]) > 0
    return int(state["step"]), RunResult(list(state["history"]))


def _models(trainees: dict[str, Trainee]) -> dict[str, nn.Module]:
    return {k: t.model for k, t in trainees.items()}


def _optims(opts) -> dict[str, torch.optim.Optimizer]:
    return {k: o for k, (o, _) in opts.items()}


def _ema_states(emas: dict[str, EMA]) -> dict[str, dict[str, Tensor]]:
    return {k: e.shadow for k, e in emas.items()}


def _sched_states(opts, hooks) -> dict:
    return {
        "schedulers": {k: s.state_dict() for k, (_, s) in opts.items()},
        "hooks": {k: h.state_dict() for k, h in hooks.items()},
    }
