"""``avatar create --minutes``: the budget's arithmetic against hand computations (the plan up
front and each stage's own sizing from its timed steps), and the estimate of a budgeted config
staying within the budget."""

from __future__ import annotations

import pytest

from lipforcing.avatar.budget import (
    TimeBudget,
    budget_plan,
    config_steps,
    iterations_per_step,
    probe_seconds,
    seconds_per_step,
    size_stage,
    with_stage_steps,
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


def test_each_stage_takes_its_share_of_the_training_time_left():
    budget = TimeBudget(minutes=60)  # reserve 10%; shares 10/10/45/20/15
    # the codec first: 3000 s left, 150 s of latents + report ahead -> pool 0.9 x 2850 =
    # 2565 s; its share 10% of all five = 256.5 s at 0.5 s/step -> 513 steps
    codec = size_stage("codec", 0.5, 3000.0, 150.0, 600, budget)
    assert codec.pool_s == pytest.approx(2565.0) and codec.share == pytest.approx(0.10)
    assert codec.steps == 513 and not codec.capped
    # the teacher after the codec and SyncNet: 2000 s left, 60 s ahead -> pool 1746 s; its
    # share 0.45 / (0.45 + 0.20 + 0.15) = 0.5625 -> 982.125 s at 2.5 s/step -> 392 steps
    teacher = size_stage("teacher", 2.5, 2000.0, 60.0, 1200, budget)
    assert teacher.share == pytest.approx(0.5625) and teacher.steps == 392
    # Stage 2, the last: everything left but the reserve: 0.9 x (700 - 60) = 576 s at 9.6 s
    # per update -> 60 updates, exactly the fixed config's (capped)
    last = size_stage("stage2", 9.6, 700.0, 60.0, 60, budget)
    assert last.share == 1.0 and last.steps == 60 and last.capped
    assert "fixed config" in last.why() and "9.60 s/step" in last.why()
    assert "56%" in teacher.why() and "29.1 training minutes" in teacher.why()


def test_a_stage_after_a_long_one_gets_less_and_never_under_the_minimum():
    budget = TimeBudget(minutes=60, min_steps=2)
    # Stage 1 when the teacher overran: 200 s left, 100 s ahead -> pool 90 s; share
    # 0.20 / 0.35 -> 51.43 s at 5 s/step = 10 steps; with 100 s left: pool 0 -> the minimum
    assert size_stage("stage1", 5.0, 200.0, 100.0, 300, budget).steps == 10
    spent = size_stage("stage1", 5.0, 100.0, 100.0, 300, budget)
    assert spent.pool_s == 0 and spent.steps == 2


def test_a_timing_run_drops_its_warm_up_and_keeps_the_median_step():
    # one iteration a step: warm-up 1 dropped, median of 2.0, 1.0, 3.0
    assert probe_seconds([9.0, 2.0, 1.0, 3.0], 1, 1) == 2.0
    # Stage 2 (2 iterations a step: critic + student): steps (1+1), (4+1), (2+2) after one
    # warm-up step (5+5) -> median of 2, 5, 4 = 4
    assert probe_seconds([5.0, 5.0, 1.0, 1.0, 4.0, 1.0, 2.0, 2.0], 2, 1) == 4.0
    with pytest.raises(ValueError, match="no timed step"):
        probe_seconds([1.0, 1.0], 2, 1)


def test_stage2_steps_are_student_updates_of_critic_and_student_iterations():
    cfg = avatar_config()
    assert cfg.recipe.stage2.critic_steps == 5
    assert iterations_per_step(cfg, "stage2") == 6
    assert all(iterations_per_step(cfg, s) == 1 for s in ("codec", "syncnet", "teacher"))


def test_one_stage_s_steps_change_alone_from_the_fixed_config():
    cfg = avatar_config()
    one = with_stage_steps(cfg, "teacher", 300)
    assert config_steps(one) == {**config_steps(cfg), "teacher": 300}
    assert one.recipe.teacher.optim.warmup_steps == 30
    assert one.recipe.stage1 == cfg.recipe.stage1 and one.codec == cfg.codec


def test_bad_budgets_are_refused():
    for bad in (
        {"minutes": 0},
        {"reserve": 1.0},
        {"min_steps": 0},
        {"probe_steps": 0},
        {"probe_warmup": -1},
    ):
        with pytest.raises(ValueError):
            TimeBudget(**bad)
