"""The randomness of one training micro-batch, as a pure function of (seed, step, sample).

Every random draw of a training step comes from one of two kinds of CPU generator:

- one generator per sample, seeded by the sample's *global* index within the optimiser step
  (data index, noise, times, CFG dropout: everything that differs between samples);
- one generator shared by every micro-batch and every process of the step (draws that must be
  the same for the whole batch: the supervised call j* of a Self-Forcing rollout, the attention
  window of a Diffusion Forcing step).

So a global batch of 4 gives the same samples whether it runs as 1 micro-batch of 4, 4 of 1
accumulated, or 2 x 2 on two processes, and a resumed run draws what the uninterrupted one
drew. Noise is always drawn on the CPU, then moved to the model's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

SHARED = -1  # sample slot of the step-wide generator


def step_generator(seed: int, step: int, sample: int) -> torch.Generator:
    """The generator of global sample ``sample`` (or :data:`SHARED`) of optimiser step ``step``."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 10_007 + sample + 1) % 2**63)


@dataclass(frozen=True)
class Draws:
    """The generators of one micro-batch: ``samples[i]`` belongs to its i-th sample."""

    shared: torch.Generator
    samples: tuple[torch.Generator, ...]

    @classmethod
    def for_micro_batch(cls, seed: int, step: int, first: int, size: int) -> Draws:
        """Micro-batch of ``size`` samples whose global indices start at ``first``."""
        gens = tuple(step_generator(seed, step, first + i) for i in range(size))
        return cls(step_generator(seed, step, SHARED), gens)

    def __len__(self) -> int:
        return len(self.samples)

    def randn(self, shape: Sequence[int]) -> Tensor:
        """(B, *shape) standard normal, row i from sample i's generator."""
        return torch.stack([torch.randn(tuple(shape), generator=g) for g in self.samples])

    def rand(self) -> Tensor:
        """(B,) uniform in [0, 1)."""
        return torch.cat([torch.rand(1, generator=g) for g in self.samples])

    def randint(self, high: int, size: Sequence[int] = ()) -> Tensor:
        """(B, *size) integers in [0, high)."""
        return torch.stack([torch.randint(high, tuple(size), generator=g) for g in self.samples])

    def shared_choice(self, n: int) -> int:
        """One integer in [0, n), the same for every micro-batch and process of the step."""
        return int(torch.randint(n, (1,), generator=self.shared))


def sample_noise(draws: Draws | torch.Generator | None, shape: Sequence[int]) -> Tensor:
    """(B, ...) noise of ``shape`` from per-sample generators (or one generator for the batch)."""
    if isinstance(draws, Draws):
        return draws.randn(shape[1:])
    return torch.randn(tuple(shape), generator=draws)
