"""Samplers: the teacher's Euler ODE solver and the student's few-step sampler.

Both take the model as a callable ``model(x_t, t, cond, **kwargs) -> velocity`` and know
nothing of its architecture. ``t`` is passed as a (B,) tensor in the model's dtype.

- :func:`euler_sample` integrates the probability-flow ODE on the shifted grid with a CFG scale
  chosen per step (a function of the grid index j), reporting every step to a callback. The
  trajectory analysis reads x0 predictions from that callback.
- :func:`few_step_sample` is the distilled student's schedule (spec section 6): predict x0 at
  tau_{j_k}, re-noise it with *fresh* noise to tau_{j_{k+1}}, repeat (the paper's J = (0, 30)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lipforcing.diffusion.guidance import ModelFn, guided_velocity
from lipforcing.diffusion.schedules import ShiftedGrid, add_noise, x0_from_velocity
from lipforcing.models.conditioning import LipSyncCond


@dataclass(frozen=True)
class StepInfo:
    """What a sampler reports after evaluating the model at grid index ``j``."""

    j: int  # grid index
    t: float  # tau_j
    x_t: Tensor  # (B, C, F, H, W) state the model saw
    velocity: Tensor  # (B, C, F, H, W) guided velocity
    x0_pred: Tensor  # (B, C, F, H, W) x_t - t * velocity
    scale: float  # CFG scale used


StepCallback = Callable[[StepInfo], None]
ScaleSchedule = Callable[[int], float] | float


def _scale_at(schedule: ScaleSchedule, j: int) -> float:
    return float(schedule(j)) if callable(schedule) else float(schedule)


def _time_batch(t: float, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)


def euler_sample(
    model: ModelFn,
    noise: Tensor,
    cond: LipSyncCond,
    *,
    grid: ShiftedGrid,
    cfg_scale: ScaleSchedule = 4.5,
    drop_mode: str = "all",
    callback: StepCallback | None = None,
    **model_kwargs,
) -> Tensor:
    """Integrate from pure noise (t = 1) to t = 0 with Euler steps on the shifted grid.

    Args:
        model: velocity predictor.
        noise: initial state at tau_0 = 1, (B, C, F, H, W).
        cond: conditions for the whole sequence.
        grid: the shifted grid; the sampler makes N model evaluations (times CFG branches).
        cfg_scale: a constant or a function j -> scale (e.g. the Sync-Window schedule).
        drop_mode: unconditional branch, ``"all"`` or ``"audio"``.
        callback: receives a :class:`StepInfo` at every step.

    Returns:
        The sample at t = 0, (B, C, F, H, W).
    """
    taus = grid.taus
    x = noise
    for j in range(grid.num_steps):
        t, t_next = taus[j], taus[j + 1]
        scale = _scale_at(cfg_scale, j)
        v = guided_velocity(model, x, _time_batch(t, x), cond, scale, drop_mode, **model_kwargs)
        if callback is not None:
            callback(StepInfo(j, t, x, v, x0_from_velocity(x, v, t), scale))
        x = x + (t_next - t) * v
    return x


def few_step_sample(
    model: ModelFn,
    noise: Tensor,
    cond: LipSyncCond,
    *,
    grid: ShiftedGrid,
    steps: Sequence[int],
    generator: torch.Generator | None = None,
    renoise: Sequence[Tensor] | None = None,
    callback: StepCallback | None = None,
    **model_kwargs,
) -> Tensor:
    """The student's schedule: x0 prediction at each tau_{j_k}, re-noised to the next index.

    Args:
        noise: initial state at tau_{steps[0]}, (B, C, F, H, W).
        grid: the shifted grid the indices refer to.
        steps: grid indices J of the model calls, increasing (the preset's ``student_steps``).
        generator: source of the fresh re-noising noise (drawn on the CPU, then moved, so
            results match across devices).
        renoise: explicit re-noising tensors, one per transition (overrides ``generator``).

    Returns:
        The last x0 prediction, (B, C, F, H, W).
    """
    taus = grid.taus
    x = noise
    x0 = noise
    for k, j in enumerate(steps):
        t = taus[j]
        v = model(x, _time_batch(t, x), cond, **model_kwargs)
        x0 = x0_from_velocity(x, v, t)
        if callback is not None:
            callback(StepInfo(j, t, x, v, x0, 1.0))
        if k + 1 < len(steps):
            eps = renoise[k] if renoise is not None else cpu_noise(x.shape, generator, x)
            x = add_noise(x0, eps, taus[steps[k + 1]])
    return x0


Generators = torch.Generator | Sequence[torch.Generator] | None


def cpu_noise(shape: Sequence[int], generator: Generators, like: Tensor) -> Tensor:
    """Gaussian noise drawn from a CPU generator, moved to ``like``'s device and dtype.

    A sequence of generators draws batch row i from generator i alone (several streams
    batched together: each row is what its stream would draw on its own).
    """
    if isinstance(generator, Sequence):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        rows = [torch.randn((1, *shape[1:]), generator=g, dtype=torch.float32) for g in generator]
        return torch.cat(rows).to(like)
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(like)
