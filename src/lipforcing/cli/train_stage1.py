"""Stage 1, Diffusion Forcing: a block-causal student initialised from a teacher checkpoint,
trained on a latent cache with per-chunk times from the student grid. Resumes from OUT/state.pt."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Stage 1, Diffusion Forcing: a block-causal student initialised from a teacher checkpoint,
trained on a latent cache with per-chunk noise levels from the student's time grid. Resumes
from OUT/state.pt."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--latents", required=True, help="latent cache (.pt) of training windows")
    parser.add_argument("--teacher", required=True, help="teacher .safetensors")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--recipe", choices=["tiny", "tiny-quick", "paper"], default="tiny")
    parser.add_argument("--steps", type=int, help="override optimiser steps")
    parser.add_argument("--micro-batch", type=int, help="override samples per process per pass")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from lipforcing.cli.train_teacher import recipe_config, with_steps
    from lipforcing.distill.distributed import init_distributed
    from lipforcing.distill.latents import load_cache
    from lipforcing.distill.stages import run_stage1
    from lipforcing.errors import UserError

    torch.set_num_threads(args.threads)
    init_distributed()  # torchrun: gloo on CPU, NCCL on GPU; a single process otherwise
    for p in (args.latents, args.teacher):
        if not Path(p).is_file():
            raise UserError(f"{p}: no such file")
    cfg = with_steps(recipe_config(args.recipe).stage1, args.steps, args.micro_batch)
    print(
        run_stage1(
            load_cache(args.latents), Path(args.teacher), cfg, Path(args.out), seed=args.seed
        )
    )
    return 0
