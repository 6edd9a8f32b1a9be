"""A create's training steps sized to a wall-time budget (``avatar create --minutes M``).

Design choices:
- The budget covers the whole create, every stage included: the footage scan and the
  calibration are measured (they have run when the steps are chosen), the latent encoding and
  the held-out report are estimated from the calibration like the rest, a reserve is kept back
  for what one timed step leaves out (optimiser updates, data loading, checkpoints, load
  swings), and what remains is the training pool shared by the five trained stages.
- Each trained stage gets a fixed share of the pool (:class:`BudgetShares`, the reasons are on
  its fields) and as many steps as its share buys at its measured seconds per step. A stage is
  never given more steps than the fixed config (``AvatarConfig``'s step counts): a stage that
  reaches that cap keeps its steps and its unused time goes to the other stages in proportion
  to their shares (so a fast machine trains the full recipe and finishes early).
- Every stage runs at least ``min_steps`` steps, even when the footage scan alone has used the
  budget: the estimate printed before training then says by how much the budget is exceeded.
- The steps are computed once, after the calibration, and stored in the build's
  ``settings.json``: a resumed create keeps them whatever the machine's speed is then.
- On the shared 2-core machine a one-minute calibration does not predict the next hour: in
  the measured creates it overestimated the training steps 1.4-7x (so the create ended well
  within its budget, which is then a bound, not a fill), and rescaling the distillation
  stages by the codec and SyncNet stages' measured speed was tried and removed: those ran at
  0.14x their calibrated time while the teacher ran at 0.38x, so a 25-minute create was
  re-planned to about 75 minutes (docs/avatar/README.md).
- Stage 1's and the teacher's linear warm-ups shrink with their steps (at most a tenth of
  them); the codec's cosine and the SyncNet's one-cycle schedules follow their step counts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from lipforcing.avatar.config import AvatarConfig

TRAINED = ("codec", "syncnet", "teacher", "stage1", "stage2")
WARMUP_SHARE = 10  # a budgeted stage warms up for at most 1/WARMUP_SHARE of its steps


@dataclass(frozen=True, kw_only=True)
class BudgetShares:
    """Each trained stage's share of the training pool (sum 1).

    From the stage-level evidence (docs/avatar/README.md "Measured", LOG.md 2026-12-05):
    the teacher is the measured limit (a 20-step teacher made no mouth on the held-out clip:
    14.5 dB against the codec's 29.4 dB, and every later stage learns from it), so it gets the
    largest share; Stage 1 and Stage 2 distil it into the 2-step student (the tiny recipe spent
    about as long on them together as on its teacher); the codec's fine-tune moved the held-out
    mouth from 25.6 to 29.4 dB in 600 steps (a small share buys most of those steps); the
    SyncNet overfits 42 s of speech (Sync-C 0.88 on seen footage, 0.18 held out after 2000
    steps), so more steps do not help it.
    """

    codec: float = 0.10
    syncnet: float = 0.10
    teacher: float = 0.45
    stage1: float = 0.20
    stage2: float = 0.15

    def __post_init__(self) -> None:
        values = dataclasses.astuple(self)
        if min(values) <= 0 or not math.isclose(sum(values), 1.0):
            raise ValueError(f"budget shares must be positive and sum to 1, got {self}")

    def of(self, stage: str) -> float:
        return getattr(self, stage)


@dataclass(frozen=True, kw_only=True)
class TimeBudget:
    """The wall time a create may take, all stages included."""

    minutes: float = 60.0  # the whole create: footage scan to the finished folder
    reserve: float = 0.10  # share of the time left after the scan kept back (see module doc)
    min_steps: int = 1  # steps every trained stage runs at least
    shares: BudgetShares = field(default_factory=BudgetShares)

    def __post_init__(self) -> None:
        if self.minutes <= 0 or not 0 <= self.reserve < 1 or self.min_steps < 1:
            raise ValueError(f"invalid time budget: {self}")


@dataclass(frozen=True)
class BudgetPlan:
    """The steps a budget chose and the arithmetic behind them (stored with the build)."""

    minutes: float
    spent_s: float  # footage scan + calibration, measured
    fixed_s: float  # latent encoding + held-out report, estimated
    reserve_s: float
    pool_s: float  # the training pool shared by the trained stages
    seconds_per_step: dict[str, float]
    steps: dict[str, int]
    capped: list[str]  # stages held at the fixed config's steps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def why(self, stage: str, shares: BudgetShares) -> str:
        """One line: how ``stage``'s steps were chosen."""
        n, per = self.steps[stage], self.seconds_per_step[stage]
        if stage in self.capped:
            return f"{n} steps: the fixed config's, reached within its share of the time"
        return (
            f"{n} steps: {shares.of(stage):.0%} of the training pool ({self.pool_s / 60:.1f} min, "
            f"plus time capped stages left) at {per:.2f} s/step measured"
        )


def config_steps(cfg: AvatarConfig) -> dict[str, int]:
    """The fixed config's steps of every trained stage (Stage 2: student updates)."""
    rc = cfg.recipe
    return {
        "codec": cfg.codec.steps,
        "syncnet": cfg.syncnet.steps,
        "teacher": rc.teacher.optim.steps,
        "stage1": rc.stage1.optim.steps,
        "stage2": rc.stage2.optim.steps,
    }


def seconds_per_step(cfg: AvatarConfig, rates: dict[str, float]) -> dict[str, float]:
    """Seconds of one step of every trained stage from calibrated ``rates``."""
    s2 = cfg.recipe.stage2.critic_steps * rates["critic"] + rates["student"]
    return {
        "codec": rates["codec"],
        "syncnet": rates["syncnet"],
        "teacher": rates["teacher"],
        "stage1": rates["stage1"],
        "stage2": s2,
    }


def size_steps(
    pool_s: float, per_step: dict[str, float], caps: dict[str, int], budget: TimeBudget
) -> tuple[dict[str, int], list[str]]:
    """Steps per trained stage: shares of ``pool_s``, capped, caps' leftovers shared again."""
    shares = budget.shares
    steps: dict[str, int] = {}
    open_, pool = list(TRAINED), max(pool_s, 0.0)
    while open_:
        total = sum(shares.of(s) for s in open_)
        full = [s for s in open_ if shares.of(s) / total * pool >= caps[s] * per_step[s]]
        if not full:
            break
        for s in full:
            steps[s] = caps[s]
            pool -= caps[s] * per_step[s]
            open_.remove(s)
    capped = [s for s in TRAINED if s in steps]
    total = sum(shares.of(s) for s in open_)
    for s in open_:
        n = math.floor(shares.of(s) / total * pool / per_step[s])
        steps[s] = min(max(n, budget.min_steps), caps[s])
    return {s: steps[s] for s in TRAINED}, capped


def budget_plan(
    budget: TimeBudget,
    cfg: AvatarConfig,
    rates: dict[str, float],
    spent_s: float,
    fixed_s: float,
) -> BudgetPlan:
    """The steps ``budget`` buys after ``spent_s`` measured and ``fixed_s`` estimated seconds."""
    left = budget.minutes * 60 - spent_s - fixed_s
    reserve = budget.reserve * max(budget.minutes * 60 - spent_s, 0.0)
    pool = max(left - reserve, 0.0)
    per = seconds_per_step(cfg, rates)
    steps, capped = size_steps(pool, per, config_steps(cfg), budget)
    return BudgetPlan(budget.minutes, spent_s, fixed_s, reserve, pool, per, steps, capped)


def with_steps(cfg: AvatarConfig, steps: dict[str, int]) -> AvatarConfig:
    """``cfg`` with the trained stages' steps replaced (warm-ups shrunk to fit them)."""
    rc = cfg.recipe

    def stage(sc, n):
        warm = min(sc.optim.warmup_steps, max(n // WARMUP_SHARE, 1)) if sc.optim.warmup_steps else 0
        return dataclasses.replace(
            sc, optim=dataclasses.replace(sc.optim, steps=n, warmup_steps=warm)
        )

    recipe = dataclasses.replace(
        rc,
        teacher=stage(rc.teacher, steps["teacher"]),
        stage1=stage(rc.stage1, steps["stage1"]),
        stage2=stage(rc.stage2, steps["stage2"]),
    )
    return dataclasses.replace(
        cfg,
        codec=dataclasses.replace(cfg.codec, steps=steps["codec"]),
        syncnet=dataclasses.replace(cfg.syncnet, steps=steps["syncnet"]),
        recipe=recipe,
    )


__all__ = [
    "TRAINED",
    "BudgetPlan",
    "BudgetShares",
    "TimeBudget",
    "budget_plan",
    "config_steps",
    "seconds_per_step",
    "size_steps",
    "with_steps",
]
