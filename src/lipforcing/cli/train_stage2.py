"""Stage 2, Self Forcing DMD with Sync-Window CFG and the SyncNet reward, on a latent cache.

Teacher, critic and student each come from their own weights (e.g. a 14B teacher with a 1.3B
student and a 1.3B critic). The reward is our LipSyncNet (``--syncnet DIR/syncnet.safetensors``)
or syncnet_python's SyncNet-v2 (``--syncnet syncnet_v2.model``, scored on the decoded crops
against the raw waveform). Ablations: --guidance static|window|none, --no-reward.
Resumes from OUT/checkpoint."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Stage 2, Self Forcing DMD with Sync-Window CFG and the SyncNet reward, on a latent cache.
Ablations: --guidance static|window|none, --no-reward. Resumes from OUT/state.pt."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lipforcing.cli.train_common import add_stage_arguments

    add_stage_arguments(parser)
    parser.add_argument("--student", required=True, help="Stage-1 student (or its adapter)")
    parser.add_argument("--teacher", required=True, help="frozen teacher weights (any layout)")
    parser.add_argument(
        "--teacher-adapter", action="append", default=[], help="adapter folded into the teacher"
    )
    parser.add_argument("--critic", help="critic init weights (default: the teacher's)")
    parser.add_argument(
        "--critic-adapter",
        action="append",
        default=[],
        help="adapter on the critic weights (folded in; with a LoRA recipe the last one starts "
        "the critic's LoRA); repeatable",
    )
    parser.add_argument("--codec", help="codec decoding rollouts for the reward (default: tiny)")
    parser.add_argument("--syncnet", help="reward network: LipSyncNet or syncnet_v2.model")
    parser.add_argument("--guidance", choices=["window", "static", "none"])
    parser.add_argument("--no-reward", action="store_true", help="unweighted DMD loss")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from lipforcing.cli.train_common import context, finish, save_every, stage_config, start
    from lipforcing.distill.stages import run_stage2
    from lipforcing.errors import UserError

    cfg = stage_config(args, "stage2")
    if args.guidance:
        cfg = dataclasses.replace(cfg, guidance=args.guidance)
    if args.no_reward:
        cfg = dataclasses.replace(cfg, reward=None)
    if cfg.reward is not None and not args.syncnet:
        raise UserError("the reward needs --syncnet (or pass --no-reward)")
    from lipforcing.distill.weights import from_cli

    adapters = [*args.teacher_adapter, *args.critic_adapter]
    files = (args.student, args.teacher, args.critic, args.syncnet, *adapters)
    cache = start(args, *files)
    reward = _reward(args, cfg, cache) if cfg.reward is not None else None
    critic = None
    if args.critic or args.critic_adapter:
        critic = from_cli(args.critic or args.teacher, args.critic_adapter, cfg.lora)
    path = run_stage2(
        cache,
        Path(args.student),
        from_cli(args.teacher, args.teacher_adapter, None),
        cfg,
        Path(args.out),
        seed=args.seed,
        reward_fn=reward,
        critic_path=critic,
        context=context(args),
        **save_every(args, 10),
    )
    return finish(path)


def _reward(args, cfg, cache):
    """The reward network and codec (frozen), checked against the cache's audio."""
    from lipforcing.codecs import load_codec
    from lipforcing.distill.recipe import shipped_codec
    from lipforcing.distill.reward import check_reward_inputs, load_reward_syncnet, syncnet_reward

    syncnet = load_reward_syncnet(args.syncnet)
    check_reward_inputs(syncnet, cache)
    codec = load_codec(args.codec or shipped_codec())
    for p in codec.parameters() if hasattr(codec, "parameters") else ():
        p.requires_grad_(False)
    return syncnet_reward(codec, syncnet, cfg.reward)
