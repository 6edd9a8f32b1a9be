"""Paired teacher trajectories: the CFG arms, the Euler-step factorial and the CFG sweep.

Spec section 5. Every arm of one clip starts from the SAME initial noise x_T (one tensor drawn
from a seeded CPU generator per clip and repeated over the arms) and sees the same conditions,
so differences between arms are paired.

- Trajectory arms: the 50-step Euler ODE from x_T with a constant CFG scale s and a drop mode.
  The x0 prediction ``x_t - t v`` is reported at every measured step j; the final sample (t = 0)
  is the sweep endpoint. Since tau_N = 0 the endpoint equals the x0 prediction of step N - 1.
- Factorial (panel b): one Euler step with scale s_0 from x_T straight to the landing index j_1,
  ``x_{t1} = x_T + (tau_{j1} - 1) v_{s0}(x_T)``, then one evaluation there with scale s_1, whose
  x0 prediction is scored. The jump equals re-noising the first x0 prediction with the same
  noise: the deterministic version of the student's (0, j_1) schedule.

Cost: the networks calls of all arms at one step go through one batched forward; the
conditional branch of a state is computed once and shared by every scale that needs it (s = 1
is that branch alone), and an unconditional branch only for the drop modes some arm uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lipforcing.diffusion.schedules import shifted_timesteps, x0_from_velocity
from lipforcing.models.conditioning import LipSyncCond

DROP_MODES = ("all", "audio", "release")  # "release": needs a negative-prompt context
NO_DROP = "none"  # drop-mode label of unguided (s = 1) arms: no unconditional branch runs


@dataclass(frozen=True, kw_only=True)
class TrajectoryConfig:
    """What one analysis run evaluates (defaults: the paper's section-5 setting)."""

    num_steps: int = 50  # N of the shifted-ODE grid
    shift: float = 5.0  # grid shift
    cfg_scale: float = 4.5  # the CFG arm's scale (panel a) and the factorial's guided scale
    drop_modes: tuple[str, ...] = ("all", "audio")  # unconditional branches studied
    sweep_scales: tuple[float, ...] = (1.0, 3.0, 4.5, 6.0)  # fixed-CFG sweep endpoints
    steps: tuple[int, ...] | None = None  # grid indices j scored on the trajectories (None: all)
    landings: tuple[int, ...] | None = None  # factorial landings j_1 (None: 1 .. N - 1)
    seed: int = 0  # noise seed; clip i's noise is a pure function of (seed, i)
    max_batch: int = 16  # samples per network call

    def __post_init__(self) -> None:
        bad = [m for m in self.drop_modes if m not in DROP_MODES]
        if bad or not self.drop_modes:
            raise ValueError(f"drop modes must be among {DROP_MODES}, got {self.drop_modes}")
        if any(not 0 <= j < self.num_steps for j in self.measured_steps):
            raise ValueError(f"steps must lie in [0, {self.num_steps - 1}]")
        if any(not 1 <= j < self.num_steps for j in self.landing_steps):
            raise ValueError(f"landings must lie in [1, {self.num_steps - 1}]")
        if self.cfg_scale <= 0 or any(s <= 0 for s in self.sweep_scales) or self.max_batch < 1:
            raise ValueError("scales and max_batch must be positive")

    @property
    def measured_steps(self) -> tuple[int, ...]:
        return tuple(range(self.num_steps)) if self.steps is None else tuple(sorted(self.steps))

    @property
    def landing_steps(self) -> tuple[int, ...]:
        if self.landings is None:
            return tuple(range(1, self.num_steps))
        return tuple(sorted(self.landings))


@dataclass(frozen=True)
class Arm:
    """A constant CFG scale with its drop mode (``"none"`` when the scale is 1)."""

    scale: float
    drop_mode: str

    @staticmethod
    def of(scale: float, drop_mode: str) -> Arm:
        return Arm(1.0, NO_DROP) if scale == 1.0 else Arm(float(scale), drop_mode)


@dataclass(frozen=True)
class Sample:
    """One x0 prediction to score: where it comes from and the latent itself."""

    panel: str  # "trajectory" | "factorial" | "sweep"
    s0: float  # scale of the trajectory / of the factorial's Euler step
    s1: float  # scale of the scored evaluation (= s0 on trajectories)
    drop_mode: str  # "all" | "audio" | "none"
    j: int  # grid index of the scored evaluation (N for a sweep endpoint, t = 0)
    t: float  # tau_j
    x0: Tensor = field(repr=False)  # (C, F, h, w)


ModelFn = Callable[..., Tensor]


def clip_noise(seed: int, index: int, shape: Sequence[int]) -> Tensor:
    """The initial noise x_T of clip ``index``: (1, C, F, h, w), drawn on the CPU."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    return torch.randn((1, *shape), generator=g, dtype=torch.float32)


def euler_jump(x: Tensor, velocity: Tensor, t0: float, t1: float) -> Tensor:
    """One Euler step of the probability-flow ODE: x_{t1} = x_{t0} + (t1 - t0) v."""
    return x + (t1 - t0) * velocity


def guide(branches: dict[str, Tensor], scale: float, drop_mode: str) -> Tensor:
    """CFG from precomputed branches: v_u + s (v_c - v_u); the conditional branch when s = 1."""
    if scale == 1.0:
        return branches["cond"]
    v_u = branches[drop_mode]
    return v_u + scale * (branches["cond"] - v_u)


def _select(variants: LipSyncCond, index: Tensor) -> LipSyncCond:
    """Rows ``index`` of a stacked condition batch (every field indexed on the batch axis)."""
    fields = {k: getattr(variants, k) for k in ("ref", "mask", "masked", "ref_seq", "audio")}
    ctx, kv = variants.context, variants.context_kv
    return LipSyncCond(
        **{k: v.index_select(0, index) for k, v in fields.items()},
        context=None if ctx is None else ctx.index_select(0, index),
        context_kv=None if kv is None else tuple((k[index], v[index]) for k, v in kv),
    )


def with_context_kv(model: ModelFn, cond: LipSyncCond) -> LipSyncCond:
    """``cond`` with the cross-attention keys/values of its context (and negative prompt)
    computed once (text-conditioned models): every later call of the clip skips those
    projections, the release's full drop included (identical velocities)."""
    fn = getattr(model, "context_kv", None)
    if fn is None or cond.context is None or cond.context_kv is not None:
        return cond
    b = cond.ref.shape[0]
    negative = None if cond.negative is None else fn(cond.negative, b)
    return dataclasses.replace(cond, context_kv=fn(cond.context, b), negative_kv=negative)


@torch.no_grad()
def branch_velocities(
    model: ModelFn,
    x: Tensor,
    t: Tensor,
    cond: LipSyncCond,
    needs: Sequence[set[str] | frozenset[str]],
    max_batch: int = 16,
) -> list[dict[str, Tensor]]:
    """The conditional branch of every state and the unconditional branches it needs.

    Args:
        model: velocity predictor ``model(x_t, t, cond)``.
        x: states, (K, C, F, h, w).
        t: their times, (K,).
        cond: the clip's conditions, batch 1.
        needs: per state, the drop modes whose unconditional branch is wanted.
        max_batch: samples per network call.

    Returns:
        Per state, ``{"cond": v_c, mode: v_u(mode), ...}`` each (C, F, h, w).
    """
    names = ("cond", *(m for m in DROP_MODES if any(m in need for need in needs)))
    variants = cond
    for mode in names[1:]:  # rows: cond, then each wanted drop mode
        variants = variants.cat(cond.drop(mode))
    jobs = [(k, "cond") for k in range(len(needs))]
    jobs += [(k, m) for k, need in enumerate(needs) for m in DROP_MODES if m in need]
    out: list[dict[str, Tensor]] = [{} for _ in needs]
    for start in range(0, len(jobs), max_batch):
        part = jobs[start : start + max_batch]
        rows = torch.tensor([k for k, _ in part])
        kinds = torch.tensor([names.index(m) for _, m in part])
        v = model(x[rows], t[rows].to(x.dtype), _select(variants, kinds))
        for (k, m), vk in zip(part, v, strict=True):
            out[k][m] = vk
    return out


def trajectory_arms(cfg: TrajectoryConfig) -> list[Arm]:
    """The distinct constant-scale arms: panel (a)'s two scales and the sweep, per drop mode."""
    scales = sorted({1.0, cfg.cfg_scale, *cfg.sweep_scales})
    arms = {Arm.of(s, m) for s in scales for m in cfg.drop_modes}
    return sorted(arms, key=lambda a: (a.scale, a.drop_mode))


@torch.no_grad()
def run_trajectories(
    model: ModelFn, noise: Tensor, cond: LipSyncCond, cfg: TrajectoryConfig
) -> Iterator[Sample]:
    """Integrate every arm from the shared ``noise`` (1, C, F, h, w) in lockstep.

    Yields the x0 predictions of the panel-(a) arms (scales 1 and ``cfg.cfg_scale``) at the
    measured steps, then every arm's final sample as a ``"sweep"`` endpoint.
    """
    arms = trajectory_arms(cfg)
    scored = [a.scale in (1.0, cfg.cfg_scale) for a in arms]
    needs = [set() if a.drop_mode == NO_DROP else {a.drop_mode} for a in arms]
    taus = shifted_timesteps(cfg.num_steps, cfg.shift).tolist()
    measured = set(cfg.measured_steps)
    x = noise.expand(len(arms), *noise.shape[1:]).clone()  # every arm starts from the same x_T
    for j in range(cfg.num_steps):
        t = torch.full((len(arms),), taus[j])
        branches = branch_velocities(model, x, t, cond, needs, cfg.max_batch)
        v = torch.stack([guide(b, a.scale, a.drop_mode) for b, a in zip(branches, arms)])
        if j in measured:
            x0 = x0_from_velocity(x, v, taus[j])
            for k, a in enumerate(arms):
                if scored[k]:
                    yield Sample("trajectory", a.scale, a.scale, a.drop_mode, j, taus[j], x0[k])
        x = euler_jump(x, v, taus[j], taus[j + 1])
    for k, a in enumerate(arms):
        if a.scale in cfg.sweep_scales:
            yield Sample("sweep", a.scale, a.scale, a.drop_mode, cfg.num_steps, 0.0, x[k])


def factorial_states(
    noise: Tensor, first: dict[str, Tensor], cfg: TrajectoryConfig, j1: int
) -> list[tuple[float, str, Tensor, set[str]]]:
    """The landing states at j_1: ``(s0, drop mode, x_{t1}, needed drop modes)``.

    ``first`` holds the branches at x_T, t = 1. The unguided jump is shared by every drop mode,
    so it needs all their unconditional branches; a guided jump needs only its own.
    """
    t1 = float(shifted_timesteps(cfg.num_steps, cfg.shift)[j1])
    x_t = noise[0]
    states = [(1.0, NO_DROP, euler_jump(x_t, first["cond"], 1.0, t1), set(cfg.drop_modes))]
    if cfg.cfg_scale != 1.0:
        for m in cfg.drop_modes:
            v = guide(first, cfg.cfg_scale, m)
            states.append((cfg.cfg_scale, m, euler_jump(x_t, v, 1.0, t1), {m}))
    return states


@torch.no_grad()
def run_factorial(
    model: ModelFn, noise: Tensor, cond: LipSyncCond, cfg: TrajectoryConfig
) -> Iterator[Sample]:
    """Panel (b): (s_0, s_1) in {1, s}^2 per drop mode at every landing j_1 (batched)."""
    taus = shifted_timesteps(cfg.num_steps, cfg.shift).tolist()
    t_one = torch.ones(1)
    first = branch_velocities(model, noise, t_one, cond, [set(cfg.drop_modes)], cfg.max_batch)[0]
    scales = (1.0, cfg.cfg_scale) if cfg.cfg_scale != 1.0 else (1.0,)
    per_call = max(1, cfg.max_batch // (1 + 2 * len(cfg.drop_modes)))  # landings per batch
    landings = cfg.landing_steps
    for start in range(0, len(landings), per_call):
        chunk = landings[start : start + per_call]
        group = [(j1, st) for j1 in chunk for st in factorial_states(noise, first, cfg, j1)]
        x = torch.stack([st[2] for _, st in group])
        t = torch.tensor([taus[j1] for j1, _ in group])
        branches = branch_velocities(model, x, t, cond, [st[3] for _, st in group], cfg.max_batch)
        for (j1, (s0, mode0, x_t1, _)), b in zip(group, branches, strict=True):
            modes = cfg.drop_modes if mode0 == NO_DROP else (mode0,)
            for s1 in scales:
                for m in modes if s1 != 1.0 else (mode0,):
                    x0 = x0_from_velocity(x_t1, guide(b, s1, m), taus[j1])
                    label = NO_DROP if s0 == 1.0 and s1 == 1.0 else m
                    yield Sample("factorial", s0, s1, label, j1, taus[j1], x0)


def run_clip(
    model: ModelFn, noise: Tensor, cond: LipSyncCond, cfg: TrajectoryConfig
) -> Iterator[Sample]:
    """Every sample of one clip: trajectories (with sweep endpoints), then the factorial."""
    cond = with_context_kv(model, cond)
    yield from run_trajectories(model, noise, cond, cfg)
    yield from run_factorial(model, noise, cond, cfg)


__all__ = [
    "DROP_MODES",
    "NO_DROP",
    "Arm",
    "Sample",
    "TrajectoryConfig",
    "branch_velocities",
    "clip_noise",
    "euler_jump",
    "factorial_states",
    "guide",
    "run_clip",
    "run_factorial",
    "run_trajectories",
    "trajectory_arms",
]
