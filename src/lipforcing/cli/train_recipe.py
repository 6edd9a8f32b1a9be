"""Run the whole chain on SynthTalk on a CPU: data -> codec -> teacher -> SyncNet -> Stage 1 ->
Stage 2 -> held-out evaluation (DIR/report.json, DIR/report.md). Every stage is skipped when its
output exists, so an interrupted recipe resumes where it stopped.
"""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Run the whole chain on SynthTalk on a CPU: data, codec, teacher, SyncNet, Stage 1, Stage 2
and the held-out evaluation (OUT/report.json, OUT/report.md). A stage whose output exists is
skipped, so an interrupted recipe resumes where it stopped."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", choices=["tiny"], help="model preset (CPU recipe: tiny)")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--quick", action="store_true", help="smoke-sized run (< 15 min)")
    parser.add_argument("--codec", help="codec checkpoint (default: the shipped tiny codec)")
    parser.add_argument("--syncnet", help="trained SyncNet checkpoint (default: train one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, init and noise")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--train-clips", type=int, help="SynthTalk training clips")
    parser.add_argument("--test-clips", type=int, default=8, help="held-out SynthTalk clips")
    parser.add_argument(
        "--guidance",
        choices=["window", "static", "none"],
        default="window",
        help="Stage-2 teacher CFG schedule (ablation)",
    )
    parser.add_argument("--no-reward", action="store_true", help="Stage 2 without SyncNet reward")
    parser.add_argument(
        "--drop-mode",
        choices=["audio", "all"],
        help="what the Stage-2 teacher's unconditional branch drops (default: audio at tiny)",
    )
    parser.add_argument(
        "--ablation-steps",
        type=int,
        default=0,
        help="also run the Table-2 Stage-2 arms (static / window / +reward)",
    )
    parser.add_argument("--teacher-steps", type=int, help="override teacher optimiser steps")
    parser.add_argument("--stage1-steps", type=int, help="override Stage-1 optimiser steps")
    parser.add_argument("--stage2-steps", type=int, help="override Stage-2 student updates")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import time
    from pathlib import Path

    import torch

    from lipforcing.config import get_preset, tiny_recipe, with_overrides
    from lipforcing.distill import recipe

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rc = tiny_recipe(args.quick)
    s2 = dataclasses.replace(
        rc.stage2,
        guidance=args.guidance,
        reward=None if args.no_reward else rc.stage2.reward,
        drop_mode=args.drop_mode or rc.stage2.drop_mode,
    )
    rc = dataclasses.replace(
        rc,
        teacher=with_overrides(rc.teacher, args.teacher_steps),
        stage1=with_overrides(rc.stage1, args.stage1_steps),
        stage2=with_overrides(s2, args.stage2_steps),
    )
    preset = get_preset(rc.preset)
    t0 = time.perf_counter()
    report = recipe.run_recipe(
        rc,
        preset,
        out,
        seed=args.seed,
        quick=args.quick,
        codec_path=args.codec,
        syncnet_path=args.syncnet,
        train_clips=args.train_clips,
        test_clips=args.test_clips,
        ablation_steps=args.ablation_steps,
    )
    report["wall_seconds"] = time.perf_counter() - t0
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(recipe.report_markdown(report))
    print((out / "report.md").read_text())
    return 0
