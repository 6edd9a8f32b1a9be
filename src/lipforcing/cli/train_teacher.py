"""Train the bidirectional teacher (flow matching, CFG dropout) on a pre-encoded latent cache
(``latents_train.pt`` written by ``lipforcing train recipe``). Resumes from OUT/checkpoint."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Train the bidirectional teacher (flow matching with CFG dropout) on a pre-encoded latent cache
(latents_train.pt, written by 'lipforcing train recipe'). Resumes from OUT/state.pt."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lipforcing.cli.train_common import add_stage_arguments

    add_stage_arguments(parser)
    parser.add_argument("--preset", help="model preset (default: the recipe's)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lipforcing.cli.train_common import context, finish, save_every, stage_config, start
    from lipforcing.config import get_preset, get_recipe
    from lipforcing.distill.stages import run_teacher
    from lipforcing.errors import UserError

    cfg = stage_config(args, "teacher")
    try:
        preset = get_preset(args.preset or get_recipe(args.recipe).preset)
    except ValueError as e:
        raise UserError(str(e)) from None
    cache = start(args)
    path = run_teacher(
        cache,
        preset,
        cfg,
        Path(args.out),
        seed=args.seed,
        context=context(args),
        **save_every(args, 100),
    )
    return finish(path)
