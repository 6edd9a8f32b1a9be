"""AdamW with linear warm-up and the accumulate -> average -> clip -> step update."""

from __future__ import annotations

import torch
from torch import nn

from lipforcing.config import OptimConfig
from lipforcing.distill.distributed import average_gradients
from lipforcing.errors import UserError


def make_optimizer(
    model: nn.Module, cfg: OptimConfig, lr: float | None = None
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over trainable params + linear warm-up over ``cfg.warmup_steps`` steps."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr or cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    warm = max(cfg.warmup_steps, 0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0
    )
    return opt, sched


def optimizer_step(model: nn.Module, opt, sched, grad_clip: float) -> float:
    """Average grads over processes, clip, step, zero; returns the pre-clip grad norm."""
    average_gradients(model)
    norm = torch.nn.utils.clip_grad_norm_(
        [p for p in model.parameters() if p.requires_grad], grad_clip
    )
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return float(norm)


def accumulation(cfg: OptimConfig, world: int) -> int:
    """Micro-batches per process per step so that world * micro * k == batch_size."""
    per = cfg.micro_batch * world
    if cfg.batch_size % per:
        raise UserError(
            f"batch {cfg.batch_size} not divisible by micro {cfg.micro_batch} x {world}"
        )
    return cfg.batch_size // per
