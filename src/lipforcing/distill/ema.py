"""Exponential moving average of a model's trainable parameters (the release's EMA callback).

``shadow = beta * shadow + (1 - beta) * param`` after every iteration, starting from a copy of
the parameters at the first update (release: constant beta 0.9999, ``start_iter`` 0). Only
trainable parameters are tracked: frozen ones (a LoRA base) equal the model's. Under FSDP2 the
shadow tensors are DTensors sharded like the parameters, so the EMA costs each process its
shard only; it is checkpointed beside the student and exported as its own file.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EMA:
    """EMA of ``model``'s trainable parameters with decay ``beta``."""

    def __init__(self, model: nn.Module, beta: float) -> None:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {beta}")
        self.beta = beta
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.shadow: dict[str, Tensor] = {n: p.detach().clone() for n, p in self.params.items()}
        self.started = False

    @torch.no_grad()
    def update(self) -> None:
        for name, p in self.params.items():
            if self.started:
                self.shadow[name].lerp_(p.detach(), 1.0 - self.beta)
            else:
                self.shadow[name].copy_(p.detach())
        self.started = True

    def state(self) -> dict[str, Tensor]:
        """The EMA values by parameter name."""
        return self.shadow
