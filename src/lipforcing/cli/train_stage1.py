"""Stage 1, Diffusion Forcing: a block-causal student initialised from its own weights (the
teacher at the tiny preset, OmniAvatar at Wan scale), trained on a latent cache with per-chunk
times. With a LoRA recipe (paper-14b, release-14b) the output is the adapter alone.
Resumes from OUT/checkpoint."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Stage 1, Diffusion Forcing: a block-causal student initialised from a teacher checkpoint,
trained on a latent cache with per-chunk noise levels from the student's time grid. Resumes
from OUT/state.pt."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lipforcing.cli.train_common import add_stage_arguments

    add_stage_arguments(parser)
    parser.add_argument(
        "--init", "--teacher", dest="init", required=True, help="init weights (.safetensors)"
    )
    parser.add_argument(
        "--init-adapter",
        action="append",
        default=[],
        help="adapter on the init weights (folded in; with a LoRA recipe the last one starts "
        "the student's LoRA); repeatable",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lipforcing.cli.train_common import context, finish, save_every, stage_config, start
    from lipforcing.distill.stages import run_stage1
    from lipforcing.distill.weights import from_cli

    cfg = stage_config(args, "stage1")
    cache = start(args, args.init, *args.init_adapter)
    path = run_stage1(
        cache,
        from_cli(args.init, args.init_adapter, cfg.lora),
        cfg,
        Path(args.out),
        seed=args.seed,
        context=context(args),
        **save_every(args, 100),
    )
    return finish(path)
