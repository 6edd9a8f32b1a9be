"""Stage 2, Self Forcing DMD with Sync-Window CFG and the SyncNet reward, on a latent cache.
Ablations: --guidance static|window|none, --no-reward. Resumes from OUT/state.pt."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Stage 2, Self Forcing DMD with Sync-Window CFG and the SyncNet reward, on a latent cache.
Ablations: --guidance static|window|none, --no-reward. Resumes from OUT/state.pt."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--latents", required=True, help="latent cache (.pt) of training windows")
    parser.add_argument("--student", required=True, help="Stage-1 student .safetensors")
    parser.add_argument("--teacher", required=True, help="teacher .safetensors")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--codec", help="codec for the reward (default: shipped tiny codec)")
    parser.add_argument("--syncnet", help="SyncNet checkpoint for the reward")
    parser.add_argument("--guidance", choices=["window", "static", "none"], default="window")
    parser.add_argument("--no-reward", action="store_true", help="unweighted DMD loss")
    parser.add_argument("--recipe", choices=["tiny", "tiny-quick", "paper"], default="tiny")
    parser.add_argument("--steps", type=int, help="override student updates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    import torch

    from lipforcing.cli.train_teacher import recipe_config, with_steps
    from lipforcing.distill.distributed import init_distributed
    from lipforcing.distill.latents import load_cache
    from lipforcing.distill.stages import run_stage2
    from lipforcing.errors import UserError

    torch.set_num_threads(args.threads)
    init_distributed()  # torchrun: gloo on CPU, NCCL on GPU; a single process otherwise
    for p in (args.latents, args.student, args.teacher):
        if not Path(p).is_file():
            raise UserError(f"{p}: no such file")
    cfg = with_steps(recipe_config(args.recipe).stage2, args.steps)
    cfg = dataclasses.replace(cfg, guidance=args.guidance, reward=not args.no_reward)
    reward = None
    if cfg.reward:
        if not args.syncnet:
            raise UserError("the reward needs --syncnet (or pass --no-reward)")
        from lipforcing.codecs import load_codec
        from lipforcing.distill.recipe import load_syncnet, shipped_codec
        from lipforcing.distill.reward import syncnet_reward

        reward = syncnet_reward(
            load_codec(args.codec or shipped_codec()), load_syncnet(args.syncnet)
        )
    print(
        run_stage2(
            load_cache(args.latents),
            Path(args.student),
            Path(args.teacher),
            cfg,
            Path(args.out),
            seed=args.seed,
            reward_fn=reward,
        )
    )
    return 0
