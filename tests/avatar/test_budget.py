"""``avatar create --minutes``: the budget's arithmetic against hand computations, and the
estimate of a budgeted config staying within the budget."""

from __future__ import annotations

import pytest

from lipforcing.avatar.budget import (
    TimeBudget,
    budget_plan,
    config_steps,
    seconds_per_step,
    with_steps,
)
from lipforcing.avatar.config import avatar_config
from lipforcing.avatar.estimate import plan


def rates(codec, syncnet, teacher, stage1, critic, student):
    return {
        "codec": codec,
        "syncnet": syncnet,
        "teacher": teacher,
        "stage1": stage1,
        "critic": critic,
        "student": student,
        "encode": 0.1,
        "forward": 0.01,
    }


def test_shares_of_the_pool_buy_steps_at_the_measured_step_times():
    cfg = avatar_config()  # caps: codec 600, SyncNet 2000, teacher 1200, Stage 1 300, Stage 2 60
    r = rates(2.0, 1.0, 10.0, 10.0, 2.0, 5.0)  # Stage 2: 5 critic x 2.0 + 5.0 = 15 s/update
    bp = budget_plan(TimeBudget(minutes=60), cfg, r, spent_s=300.0, fixed_s=200.0)
    # by hand: 3600 - 300 - 200 = 3100 s left; reserve 10% of 3600 - 300 = 330 s; pool 2770 s
    assert bp.reserve_s == pytest.approx(330.0) and bp.pool_s == pytest.approx(2770.0)
    # codec 10% = 277 s / 2 = 138; SyncNet 277 / 1 = 277; teacher 45% = 1246.5 / 10 = 124;
    # Stage 1 20% = 554 / 10 = 55; Stage 2 15% = 415.5 / 15 = 27
    assert bp.steps == {"codec": 138, "syncnet": 277, "teacher": 124, "stage1": 55, "stage2": 27}
    assert bp.capped == []
    assert bp.seconds_per_step["stage2"] == 15.0


def test_capped_stages_give_their_leftover_time_to_the_others():
    cfg = avatar_config()
    r = rates(0.5, 0.25, 2.0, 1.0, 0.5, 1.5)  # Stage 2: 5 x 0.5 + 1.5 = 4 s/update
    bp = budget_plan(TimeBudget(minutes=60), cfg, r, spent_s=300.0, fixed_s=200.0)
    # by hand, pool 2770 s. Round 1: Stage 1's 20% (554 s) buys 554 > 300 steps: capped at
    # 300 (300 s); pool 2470 s over shares 0.8. Round 2: codec 0.1/0.8 x 2470 = 308.75 s buys
    # 617 > 600 (capped, 300 s), Stage 2 0.15/0.8 x 2470 = 463.1 s buys 115 > 60 (capped,
    # 240 s); pool 1930 s over shares 0.55. Round 3: SyncNet 0.1/0.55 x 1930 / 0.25 = 1403.6,
    # teacher 0.45/0.55 x 1930 / 2 = 789.5: neither capped.
    assert bp.steps == {"codec": 600, "syncnet": 1403, "teacher": 789, "stage1": 300, "stage2": 60}
    assert bp.capped == ["codec", "stage1", "stage2"]
    assert "fixed config" in bp.why("codec", TimeBudget().shares)
    assert "45%" in bp.why("teacher", TimeBudget().shares)


def test_a_fast_machine_runs_the_fixed_config_and_a_spent_budget_the_minimum():
    cfg = avatar_config()
    fast = budget_plan(TimeBudget(minutes=60), cfg, rates(*[1e-4] * 6), 10.0, 10.0)
    assert fast.steps == config_steps(cfg)
    slow = budget_plan(TimeBudget(minutes=60, min_steps=3), cfg, rates(*[1.0] * 6), 3700.0, 9.0)
    assert slow.pool_s == 0 and set(slow.steps.values()) == {3}


@pytest.mark.parametrize("minutes", [20, 60, 240])
def test_the_estimate_of_the_budgeted_config_fills_the_budget(minutes):
    cfg = avatar_config()
    r = rates(1.7, 1.05, 14.6, 11.9, 5.5, 25.0)  # the loaded machine's calibration (README)
    spent, windows, held = 265.0, 257, 188
    fixed = {s.name: s.seconds for s in plan(cfg, r, windows, held)}
    fixed_s = fixed["latents"] + fixed["report"]
    budget = TimeBudget(minutes=minutes)
    bp = budget_plan(budget, cfg, r, spent, fixed_s)
    stages = plan(with_steps(cfg, bp.steps), r, windows, held)
    total = spent + sum(s.seconds for s in stages)
    limit = minutes * 60 - bp.reserve_s
    assert total <= limit
    assert total > limit - sum(seconds_per_step(cfg, r).values())  # within a step per stage
    assert {s.name: s.steps for s in stages if s.name in bp.steps} == bp.steps


def test_budgeted_steps_shrink_the_warm_ups_and_keep_the_rest():
    cfg = avatar_config()
    steps = {"codec": 50, "syncnet": 70, "teacher": 120, "stage1": 30, "stage2": 4}
    small = with_steps(cfg, steps)
    assert config_steps(small) == steps
    assert small.recipe.teacher.optim.warmup_steps == 12  # a tenth of 120 (fixed config: 40)
    assert small.recipe.stage1.optim.warmup_steps == 3
    assert small.recipe.stage2.optim.warmup_steps == 0
    assert small.recipe.teacher.optim.lr == cfg.recipe.teacher.optim.lr
    assert with_steps(cfg, config_steps(cfg)) == cfg  # the fixed steps change nothing


def test_bad_budgets_are_refused():
    for bad in ({"minutes": 0}, {"reserve": 1.0}, {"min_steps": 0}):
        with pytest.raises(ValueError):
            TimeBudget(**bad)
