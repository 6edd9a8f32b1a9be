"""Train the bidirectional teacher (flow matching, CFG dropout) on a pre-encoded latent cache
(``latents_train.pt`` written by ``lipforcing train recipe``). Resumes from OUT/state.pt."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Train the bidirectional teacher (flow matching with CFG dropout) on a pre-encoded latent cache
(latents_train.pt, written by 'lipforcing train recipe'). Resumes from OUT/state.pt."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--latents", required=True, help="latent cache (.pt) of training windows")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--preset", default="tiny", help="model preset")
    parser.add_argument("--recipe", choices=["tiny", "tiny-quick", "paper"], default="tiny")
    parser.add_argument("--steps", type=int, help="override optimiser steps")
    parser.add_argument("--micro-batch", type=int, help="override samples per process per pass")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def recipe_config(name: str):
    from lipforcing.config import paper_recipe, tiny_recipe

    return {"tiny": tiny_recipe, "tiny-quick": lambda: tiny_recipe(True), "paper": paper_recipe}[
        name
    ]()


def with_steps(cfg, steps: int | None, micro_batch: int | None = None):
    import dataclasses

    optim = cfg.optim
    if steps is not None:
        optim = dataclasses.replace(optim, steps=steps)
    if micro_batch is not None:
        optim = dataclasses.replace(optim, micro_batch=micro_batch)
    return dataclasses.replace(cfg, optim=optim)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from lipforcing.config import get_preset
    from lipforcing.distill.distributed import init_distributed
    from lipforcing.distill.latents import load_cache
    from lipforcing.distill.stages import run_teacher
    from lipforcing.errors import UserError

    torch.set_num_threads(args.threads)
    init_distributed()  # torchrun: gloo on CPU, NCCL on GPU; a single process otherwise
    if not Path(args.latents).is_file():
        raise UserError(f"{args.latents}: no such latent cache")
    cfg = with_steps(recipe_config(args.recipe).teacher, args.steps, args.micro_batch)
    path = run_teacher(
        load_cache(args.latents), get_preset(args.preset), cfg, Path(args.out), seed=args.seed
    )
    print(path)
    return 0
