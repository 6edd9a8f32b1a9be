"""A create's training steps sized to a wall-time budget (``avatar create --minutes M``).

Design choices:
- The budget covers the whole create, every stage included (footage scan, calibration, the
  stages' own timing runs, latent encoding, training, held-out report).
- Up front (:func:`budget_plan`): after the footage scan and a calibration of one step of
  every stage, the whole create is planned and its total printed before training starts
  (the issue asks for an estimate first). Those planned steps are not what runs: on the
  shared 2-core machine a one-minute calibration does not predict the next hour (in the
  measured creates it overestimated the training steps 1.4-7x, so only a third of the budget
  was used; docs/avatar/README.md).
- Adaptive (:func:`size_stage`): each trained stage, when it starts, times its own steps in
  its real training loop (``probe_warmup`` steps to warm up, then ``probe_steps`` timed; the
  median kept) in a scratch folder that is then removed, and fixes its step count to fill its
  share of the budget LEFT at that moment: the time still ahead that is not training (latent
  encoding, report: estimated from the calibration) is taken out, a ``reserve`` share of the
  rest is held back for what the timed steps leave out (checkpoint writes, model loading,
  load swings), and the stage gets its share of the rest among the stages not yet run
  (:class:`BudgetShares`). A stage that ran short or long leaves more or less to the ones
  after it; the reserve a stage holds back passes on to the next (only the last stage's is
  left unused).
- The timing steps are run apart and discarded, so each stage's schedule (warm-ups, the
  codec's cosine, the SyncNet's one-cycle) is built for its final step count from step 0;
  they cost ``probe_warmup + probe_steps`` steps per stage, counted in the budget.
- A stage is never given more steps than the fixed config (``AvatarConfig``'s step counts;
  then the time it leaves goes to the stages after it) and always at least ``min_steps``.
- Each stage's count is stored in the build's ``settings.json`` when it is fixed: a resumed
  create keeps it (an interrupted stage resumes with the count its state was trained for).
- Stage 1's and the teacher's linear warm-ups shrink with their steps (at most a tenth of
  them); the codec's cosine and the SyncNet's one-cycle schedules follow their step counts.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
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
    reserve: float = 0.10  # share of the time left kept back (see module doc)
    min_steps: int = 1  # steps every trained stage runs at least
    probe_warmup: int = 1  # untimed first steps of a stage's timing run (first-call costs)
    probe_steps: int = 3  # timed steps after them (median): one step swings 2x when shared
    shares: BudgetShares = field(default_factory=BudgetShares)

    def __post_init__(self) -> None:
        if self.minutes <= 0 or not 0 <= self.reserve < 1 or self.min_steps < 1:
            raise ValueError(f"invalid time budget: {self}")
        if self.probe_warmup < 0 or self.probe_steps < 1:
            raise ValueError(f"invalid time budget: {self}")

    @property
    def probe_total(self) -> int:
        """Steps of a stage's timing run."""
        return self.probe_warmup + self.probe_steps


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


def iterations_per_step(cfg: AvatarConfig, stage: str) -> int:
    """Loop iterations of one of ``stage``'s steps (Stage 2 with the paper's unit: the critic
    updates and the student update of one student update)."""
    if stage != "stage2":
        return 1
    s2 = cfg.recipe.stage2
    return s2.iterations // s2.optim.steps


def probe_seconds(times: list[float], per_step: int, warmup: int) -> float:
    """Median seconds of one step from a timing run's per-iteration ``times``: the first
    ``warmup`` steps dropped, a step being ``per_step`` consecutive iterations."""
    first = warmup * per_step
    starts = range(first, len(times) - per_step + 1, per_step)
    steps = [sum(times[i : i + per_step]) for i in starts]
    if not steps:
        raise ValueError(f"no timed step in {len(times)} iterations (warm-up {warmup} steps)")
    return float(statistics.median(steps))


@dataclass(frozen=True)
class StageSizing:
    """One trained stage's step count, fixed when the stage starts (stored with the build)."""

    stage: str
    steps: int
    seconds_per_step: float  # measured in the stage's own timing run
    left_s: float  # budget left when the stage started (after its timing run)
    ahead_s: float  # estimated seconds of the untrained stages still ahead
    pool_s: float  # training time for this stage and the ones after it (reserve taken out)
    share: float  # this stage's fraction of the pool
    capped: bool  # held at the fixed config's steps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def why(self) -> str:
        """One line: how the steps were chosen."""
        per = f"{self.seconds_per_step:.2f} s/step timed in its own loop"
        if self.capped:
            return f"{self.steps} steps: the fixed config's, within its share ({per})"
        return (
            f"{self.steps} step{'s' * (self.steps != 1)}: {self.share:.0%} of the "
            f"{self.pool_s / 60:.1f} training "
            f"minutes left at {per}"
        )


def size_stage(
    stage: str,
    seconds_per_step: float,
    left_s: float,
    ahead_s: float,
    cap: int,
    budget: TimeBudget,
) -> StageSizing:
    """``stage``'s steps: its share of the training time left, among it and the trained stages
    after it (module docstring); ``left_s``: the budget not yet spent, ``ahead_s``: the
    estimated untrained time still ahead, ``cap``: the fixed config's steps."""
    pool = max(left_s - ahead_s, 0.0) * (1 - budget.reserve)
    later = TRAINED[TRAINED.index(stage) :]
    share = budget.shares.of(stage) / sum(budget.shares.of(s) for s in later)
    n = math.floor(share * pool / seconds_per_step)
    steps = min(max(n, budget.min_steps), cap)
    return StageSizing(stage, steps, seconds_per_step, left_s, ahead_s, pool, share, n >= cap)


def with_stage_steps(cfg: AvatarConfig, stage: str, n: int) -> AvatarConfig:
    """``cfg`` with ``stage``'s steps set to ``n`` (see :func:`with_steps`)."""
    return with_steps(cfg, {**config_steps(cfg), stage: n})


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
    "StageSizing",
    "TimeBudget",
    "budget_plan",
    "config_steps",
    "iterations_per_step",
    "probe_seconds",
    "seconds_per_step",
    "size_stage",
    "size_steps",
    "with_stage_steps",
    "with_steps",
]
