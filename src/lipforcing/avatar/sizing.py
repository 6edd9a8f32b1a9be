"""The steps a create's trained stages run, chosen and kept with the build.

Without a budget they are the fixed config's. With one (:mod:`lipforcing.avatar.budget`) the
whole create is planned up front from the calibration (the printed estimate), then each
trained stage, when it starts, runs its own timing run and fixes its steps from it and the
budget left (:func:`~lipforcing.avatar.budget.size_stage`). Everything chosen is written to the
build's ``settings.json`` (``"plan"``) at once, so a resumed create keeps it; the card gets
each stage's planned and actual steps and times.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from lipforcing.avatar.budget import (
    TRAINED,
    TimeBudget,
    budget_plan,
    config_steps,
    iterations_per_step,
    probe_seconds,
    size_stage,
    with_stage_steps,
    with_steps,
)
from lipforcing.avatar.config import AvatarConfig

PLAN_KEY = "plan"  # settings.json's entry with the steps every trained stage runs
FIXED = "the fixed config's steps"

# (config, run folder, list the loop appends each iteration's seconds to) -> the stage's output
Probe = Callable[[AvatarConfig, Path, list], object]


class StageSteps:
    """The steps of a build's trained stages (see the module docstring)."""

    def __init__(self, work: Path, cfg: AvatarConfig, budget: TimeBudget | None, log=print):
        self.work, self.fixed, self.budget, self.log = work, cfg, budget, log
        self.path = work / "settings.json"
        self.caps = config_steps(cfg)

    def _plan(self) -> dict:
        return json.loads(self.path.read_text()).get(PLAN_KEY, {})

    def _store(self, plan: dict) -> None:
        settings = json.loads(self.path.read_text())
        settings[PLAN_KEY] = plan
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(settings, indent=2))
        os.replace(tmp, self.path)

    def config(self) -> AvatarConfig:
        """The config with the steps known now: each sized stage's, the plan's for the rest."""
        plan = self._plan()
        if self.budget is None or "planned" not in plan:
            return self.fixed
        sized = {s: v["steps"] for s, v in plan["sized"].items()}
        return with_steps(self.fixed, {**plan["planned"]["steps"], **sized})

    def start(self, rates: dict, spent_s: float, estimate: Callable[[AvatarConfig], dict]):
        """The up-front plan (chosen on the first run, read back on a resume) and the config
        it estimates; ``estimate(cfg)``: seconds of every stage of ``cfg``."""
        if not self._plan():
            if self.budget is None:
                self._store({"fixed": True})
            else:
                est = estimate(self.fixed)
                fixed_s = est["latents"] + est["avatar"]
                bp = budget_plan(self.budget, self.fixed, rates, spent_s, fixed_s)
                planned = {"steps": bp.steps, "budget": bp.to_dict()}
                planned["seconds"] = estimate(with_steps(self.fixed, bp.steps))
                self._store({"planned": planned, "sized": {}})
        return self.config()

    def size(self, stage: str, probe: Probe, left_s: Callable[[], float], ahead_s: float):
        """``stage``'s steps, fixed now (a timing run, then :func:`size_stage`) unless the
        build has them already; returns the config to run it with."""
        plan = self._plan()
        if self.budget is not None and stage not in plan["sized"]:
            times: list[float] = []
            scratch = self.work / "probe" / stage
            shutil.rmtree(scratch, ignore_errors=True)  # an interrupted timing run restarts
            cfg = with_stage_steps(self.config(), stage, self.budget.probe_total)
            start = time.perf_counter()
            probe(cfg, scratch, times)
            spent = time.perf_counter() - start
            shutil.rmtree(scratch, ignore_errors=True)
            per = iterations_per_step(self.fixed, stage)
            seconds = probe_seconds(times, per, self.budget.probe_warmup)
            sz = size_stage(stage, seconds, left_s(), ahead_s, self.caps[stage], self.budget)
            plan["sized"][stage] = {**sz.to_dict(), "why": sz.why(), "probe_s": spent}
            self._store(plan)
        self.log(f"  {stage}: {self._why(plan, stage)} (fixed config: {self.caps[stage]})")
        return self.config()

    def seconds(self, stage: str) -> float | None:
        """The expected seconds of a sized stage's training (None when not sized)."""
        got = self._plan().get("sized", {}).get(stage)
        return None if got is None else got["steps"] * got["seconds_per_step"]

    def _why(self, plan: dict, stage: str) -> str:
        if self.budget is None:
            return f"{self.caps[stage]} steps: {FIXED}"
        return plan["sized"][stage]["why"]

    def card(self, timings: dict) -> dict:
        """The card's ``steps``: per trained stage the steps run, the fixed config's, why,
        and under a budget the planned vs actual steps and seconds of every stage (``timings``:
        the stages finished so far; the card is written inside the last one)."""
        plan, cfg = self._plan(), self.config()
        ran = config_steps(cfg)
        card: dict = {}
        for s in TRAINED:
            card[s] = {"steps": ran[s], "config_steps": self.caps[s], "why": self._why(plan, s)}
        if self.budget is None:
            return card
        planned = plan["planned"]
        for s in TRAINED:
            got = plan["sized"].get(s, {})
            card[s] |= {
                "planned_steps": planned["steps"][s],
                "planned_s_per_step": planned["budget"]["seconds_per_step"][s],
                "timed_s_per_step": got.get("seconds_per_step"),
                "timing_run_s": got.get("probe_s"),
            }
        card["budget"] = {
            "minutes": self.budget.minutes,
            "planned_s": planned["seconds"],
            "actual_s": {k: v for k, v in timings.items() if isinstance(v, int | float)},
            "plan": planned["budget"],
            "sized": plan["sized"],
        }
        return card


__all__ = ["PLAN_KEY", "StageSteps"]
