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
    opt = torch.optim.AdamW(
        params, lr=cfg.lr if lr is None else lr, betas=cfg.betas, weight_decay=cfg.weight_decay
    )
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


def accumulation(batch_size: int, micro_batch: int, world: int) -> int:
    """Micro-batches per process per step so that world * micro_batch * k == batch_size."""
    per = micro_batch * world
    if batch_size % per:
        raise UserError(
            f"batch size {batch_size} is not a multiple of micro-batch {micro_batch} x "
            f"{world} process(es)"
        )
    return batch_size // per
