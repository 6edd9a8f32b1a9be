"""Arguments shared by the ``lipforcing train {teacher,stage1,stage2}`` commands."""

from __future__ import annotations

import argparse


def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    """--latents, --out, --recipe and the batch / step overrides every stage takes."""
    from lipforcing.config import RECIPES

    parser.add_argument("--latents", required=True, help="latent cache (.pt) of training windows")
    parser.add_argument(
        "--out", required=True, help="run folder (resumes when it has a checkpoint)"
    )
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="tiny", help="named recipe")
    parser.add_argument("--steps", type=int, help="override the stage's optimiser steps")
    parser.add_argument("--batch-size", type=int, help="override the global batch per step")
    parser.add_argument("--micro-batch", type=int, help="override samples per process per pass")
    parser.add_argument("--save-every", type=int, help="iterations between checkpoints")
    parser.add_argument(
        "--context",
        help="text context file (lipforcing encode-prompt; Wan presets, with its negative prompt "
        "for the release's full-drop CFG)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def stage_config(args: argparse.Namespace, stage: str):
    """The recipe's config of ``stage`` with the command line's overrides."""
    from lipforcing.config import get_recipe, with_overrides
    from lipforcing.errors import UserError

    try:
        cfg = with_overrides(
            getattr(get_recipe(args.recipe), stage), args.steps, args.batch_size, args.micro_batch
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    return cfg


def start(args: argparse.Namespace, *files: str | None) -> dict:
    """Threads, the process group (torchrun: gloo on CPU, NCCL on GPU), input checks; returns
    the latent cache."""
    from pathlib import Path

    import torch

    from lipforcing.distill.distributed import init_distributed
    from lipforcing.distill.latents import load_cache
    from lipforcing.errors import UserError

    torch.set_num_threads(args.threads)
    for p in (args.latents, args.context, *files):
        if p is not None and not Path(p).exists():
            raise UserError(f"{p}: no such file or folder")
    init_distributed()
    return load_cache(args.latents)


def finish(path) -> int:
    """The process group ended together (:func:`finish_distributed`), the output's path printed."""
    from lipforcing.distill.distributed import finish_distributed

    finish_distributed()
    print(path)
    return 0


def save_every(args: argparse.Namespace, default: int) -> dict:
    return {"save_every": args.save_every or default}


def context(args: argparse.Namespace):
    """The ``--context`` file as stored (each stage checks it against its models), or None."""
    from lipforcing.models.text import read_context

    return None if args.context is None else read_context(args.context)
